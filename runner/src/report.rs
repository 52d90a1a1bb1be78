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
///
/// Every occurrence of every value is found in the original text first and
/// the covered ranges are merged, so secrets that overlap or contain one
/// another leave nothing of either. A value of several lines is also masked
/// line by line, since a log line holds one line of it at a time.
#[derive(Clone, Default)]
pub struct Mask {
    values: Arc<Vec<String>>,
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mask({} values)", self.values.len())
    }
}

/// Values shorter than this would mask ordinary text; they are not secrets.
const MIN_SECRET_LEN: usize = 4;

impl Mask {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut values = Vec::new();
        for secret in secrets {
            if secret.contains('\n') {
                values.extend(
                    secret
                        .lines()
                        .map(|line| line.trim_end_matches('\r').to_owned())
                        .filter(|line| line.trim().len() >= MIN_SECRET_LEN),
                );
            }
            if secret.len() >= MIN_SECRET_LEN {
                values.push(secret);
            }
        }
        values.sort();
        values.dedup();
        Self {
            values: Arc::new(values),
        }
    }

    pub fn apply(&self, text: &str) -> String {
        let mut covered: Vec<(usize, usize)> = Vec::new();
        for value in self.values.iter() {
            let mut from = 0;
            while let Some(at) = text[from..].find(value.as_str()) {
                let start = from + at;
                covered.push((start, start + value.len()));
                // Overlapping occurrences count too: go on one character on.
                from = start + text[start..].chars().next().map_or(1, char::len_utf8);
            }
        }
        if covered.is_empty() {
            return text.to_owned();
        }
        covered.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut current: Option<(usize, usize)> = None;
        for (start, end) in covered {
            match &mut current {
                Some((_, until)) if start <= *until => *until = (*until).max(end),
                _ => {
                    if let Some((s, e)) = current.take() {
                        out.push_str(&text[at..s]);
                        out.push_str("***");
                        at = e;
                    }
                    current = Some((start, end));
                }
            }
        }
        if let Some((s, e)) = current {
            out.push_str(&text[at..s]);
            out.push_str("***");
            at = e;
        }
        out.push_str(&text[at..]);
        out
    }
}

/// How often buffered lines are sent.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Most lines sent in one append.
const BATCH: usize = 500;
/// Most text sent in one append: well under the API's 8 MiB body limit,
/// whatever the JSON escaping adds.
const BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Longest line the API stores; longer ones are cut.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// How long lines are retried while the API cannot be reached.
const LINE_PATIENCE: Duration = Duration::from_secs(600);

enum Command {
    Line(String, String),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// How a service converges, as a rollout reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convergence {
    Converging,
    Converged,
    Failed,
}

/// The log and progress of one deployment.
#[derive(Clone)]
pub struct Reporter {
    client: Client,
    id: String,
    instance: String,
    mask: Mask,
    lines: mpsc::UnboundedSender<Command>,
}

impl Reporter {
    /// Starts the sender that appends lines in batches, in order, after the
    /// `stored` lines the deployment already has.
    pub fn start(client: Client, id: String, instance: String, mask: Mask, stored: i64) -> Self {
        let (lines, mut rx) = mpsc::unbounded_channel::<Command>();
        let mut log = Log {
            client: client.clone(),
            id: id.clone(),
            instance: instance.clone(),
            stored,
            buffer: Vec::new(),
            bytes: 0,
        };
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(FLUSH_EVERY);
            loop {
                let command = tokio::select! {
                    command = rx.recv() => command,
                    _ = ticker.tick() => {
                        log.send().await;
                        continue;
                    }
                };
                match command {
                    Some(Command::Line(stream, text)) => {
                        if log.bytes + text.len() > BATCH_BYTES {
                            log.send().await;
                        }
                        log.bytes += text.len() + stream.len();
                        log.buffer.push(append_deployment_logs::LogLineInput {
                            text,
                            stream: Some(stream),
                            at: Some(chrono::Utc::now()),
                        });
                        if log.buffer.len() >= BATCH {
                            log.send().await;
                        }
                    }
                    Some(Command::Flush(done)) => {
                        log.send().await;
                        let _ = done.send(());
                    }
                    None => {
                        log.send().await;
                        return;
                    }
                }
            }
        });
        Self {
            client,
            id,
            instance,
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
        // The deployment's span (see `rollout::execute`) says whose line it is.
        tracing::info!("{text}");
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
                instance: Some(self.instance.clone()),
                phase,
                message: Some(self.mask.apply(message)),
                sha: sha.map(str::to_owned),
                convergence: None,
            })
            .await?;
        Ok(data.update_deployment_progress.cancel_requested)
    }

    /// Says how each service of the stack converges now (replacing what was
    /// said before); the details are masked like log lines.
    pub async fn convergence(
        &self,
        services: &[(String, Convergence, String)],
    ) -> Result<(), slipway_client::Error> {
        use update_deployment_progress::{ConvergenceState, ServiceConvergenceInput};
        let convergence = services
            .iter()
            .map(|(service, state, detail)| ServiceConvergenceInput {
                service: service.clone(),
                state: match state {
                    Convergence::Converging => ConvergenceState::CONVERGING,
                    Convergence::Converged => ConvergenceState::CONVERGED,
                    Convergence::Failed => ConvergenceState::FAILED,
                },
                detail: Some(self.mask.apply(detail)),
            })
            .collect();
        self.client
            .run::<UpdateDeploymentProgress>(update_deployment_progress::Variables {
                id: self.id.clone(),
                instance: Some(self.instance.clone()),
                phase: None,
                message: None,
                sha: None,
                convergence: Some(convergence),
            })
            .await?;
        Ok(())
    }
}

/// The lines of one deployment on their way to the API.
struct Log {
    client: Client,
    id: String,
    instance: String,
    /// The last sequence number the API confirmed stored.
    stored: i64,
    buffer: Vec<append_deployment_logs::LogLineInput>,
    /// Text bytes in `buffer`.
    bytes: usize,
}

impl Log {
    /// Sends what is buffered.
    async fn send(&mut self) {
        let lines = std::mem::take(&mut self.buffer);
        self.bytes = 0;
        self.append(lines).await;
    }

    /// Appends `lines`, retrying while the API cannot be reached (it may be
    /// restarting): lines are kept in order and none is dropped for a short
    /// outage. A batch the API refuses as too large is split; a single line
    /// it refuses is dropped with a warning, not retried for ten minutes.
    async fn append(&mut self, lines: Vec<append_deployment_logs::LogLineInput>) {
        let mut pending = vec![lines];
        while let Some(lines) = pending.pop() {
            if lines.is_empty() {
                continue;
            }
            match self.try_append(&lines).await {
                Ok(()) => {}
                Err(err) if is_too_large(&err) && lines.len() > 1 => {
                    let mut first = lines;
                    let second = first.split_off(first.len() / 2);
                    // `pending` is a stack: the first half goes out first.
                    pending.push(second);
                    pending.push(first);
                }
                Err(err) => {
                    tracing::warn!(deployment = %self.id, %err, lines = lines.len(), "could not store log lines; dropped");
                }
            }
        }
    }

    async fn try_append(
        &mut self,
        lines: &[append_deployment_logs::LogLineInput],
    ) -> Result<(), slipway_client::Error> {
        let mut wait = Duration::from_millis(200);
        let deadline = tokio::time::Instant::now() + LINE_PATIENCE;
        loop {
            let result = self
                .client
                .run::<AppendDeploymentLogs>(append_deployment_logs::Variables {
                    id: self.id.clone(),
                    instance: Some(self.instance.clone()),
                    lines: lines.to_vec(),
                    // A retry of a batch whose answer was lost stores it once.
                    after: Some(self.stored),
                })
                .await;
            match result {
                Ok(data) => {
                    self.stored = data.append_deployment_logs.log_count;
                    return Ok(());
                }
                Err(err) if err.is_transient() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
                Err(err) => return Err(err),
            }
        }
    }
}

fn is_too_large(err: &slipway_client::Error) -> bool {
    matches!(err, slipway_client::Error::Refused { status: 413, .. })
}

#[cfg(test)]
mod tests {
    use super::Mask;

    #[test]
    fn overlapping_containing_and_multi_line_secrets_leave_nothing() {
        let mask = Mask::new([
            "abcdef".to_owned(),
            "defghi".to_owned(),
            "-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----\n".to_owned(),
        ]);
        assert_eq!(mask.apply("x abcdefghi y"), "x *** y");
        assert_eq!(mask.apply("MIIEvQIBADANBg"), "***");
        assert_eq!(
            mask.apply("key: -----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----\n!"),
            "key: ***!"
        );
        assert_eq!(mask.apply("abcabcdefdef"), "abc***def");
        assert!(!format!("{mask:?}").contains("abcdef"));
    }

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

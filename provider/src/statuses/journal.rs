//! The durable record of which deployments' statuses go to GitHub and how far
//! that has got: an append-only JSON-lines file under `--data-dir`, each record
//! flushed to disk before the step it records is acknowledged.
//!
//! A deployment is *tracked* (with its GitHub repository and, for one from a
//! `deployment` event, its GitHub deployment id) before the hook that created it
//! is answered; the id of a GitHub deployment Slipway creates for a push is
//! recorded as soon as GitHub answers; each status is recorded once GitHub took
//! it; *done* when the last one is posted (or GitHub refused it for good). On
//! start the file is replayed, so whatever was not yet posted is posted, in
//! order, after a restart. The file is compacted on open and when it grows:
//! done deployments keep only their id (the last [`DONE_KEPT`]), so a late
//! redelivery of their hook does not report them twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::GithubState;

/// How many finished deployments the journal remembers.
pub const DONE_KEPT: usize = 10_000;
const FILE_NAME: &str = "github-statuses.jsonl";

/// What Slipway creates on GitHub for a deployment it made from a push.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubDeploymentSpec {
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub sha: String,
    pub environment: String,
    pub task: String,
    pub description: Option<String>,
}

/// A deployment whose statuses go to GitHub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    /// The Slipway deployment.
    pub deployment: i64,
    /// `owner/name` on GitHub.
    pub repo: String,
    /// The GitHub deployment; for a push, unknown until Slipway has created it.
    pub github_id: Option<u64>,
    /// For a push: the GitHub deployment to create first.
    pub create: Option<GithubDeploymentSpec>,
    /// The statuses GitHub has taken, in order.
    #[serde(default)]
    pub posted: Vec<GithubState>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Track(Tracked),
    Created { deployment: i64, github_id: u64 },
    Posted { deployment: i64, state: GithubState },
    Done { deployment: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// The journal, shared by the hook handlers and the reporter.
#[derive(Clone, Debug)]
pub struct Journal {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    live: BTreeMap<i64, Tracked>,
    /// GitHub deployment id → Slipway deployment, for the live ones.
    by_github: HashMap<u64, i64>,
    done: BTreeSet<i64>,
    /// Records in the file, to know when to compact.
    records: usize,
}

impl Journal {
    /// Opens (creating) the journal in `dir`, replays it and compacts it.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        let io = |cause| JournalError::Io {
            path: dir.to_owned(),
            cause,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(FILE_NAME);
        let mut live = BTreeMap::new();
        let mut done = BTreeSet::new();
        match File::open(&path) {
            Ok(file) => replay(&path, file, &mut live, &mut done)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(cause) => return Err(JournalError::Io { path, cause }),
        }
        let file = compact(&path, &live, &done)?;
        let records = live.len() + done.len();
        let by_github = index(&live);
        if !live.is_empty() {
            tracing::info!(
                pending = live.len(),
                "the status journal has deployments whose GitHub statuses are not all posted"
            );
        }
        Ok(Journal {
            inner: Arc::new(Mutex::new(Inner {
                path,
                file,
                live,
                by_github,
                done,
                records,
            })),
        })
    }

    /// Starts tracking a deployment; `false` (and nothing written) when it is
    /// tracked already or was finished before.
    pub fn track(&self, tracked: Tracked) -> Result<bool, JournalError> {
        let mut inner = self.lock();
        if inner.live.contains_key(&tracked.deployment) || inner.done.contains(&tracked.deployment)
        {
            return Ok(false);
        }
        inner.append(&Record::Track(tracked.clone()))?;
        if let Some(github_id) = tracked.github_id {
            inner.by_github.insert(github_id, tracked.deployment);
        }
        inner.live.insert(tracked.deployment, tracked);
        Ok(true)
    }

    /// Records the GitHub deployment Slipway created for `deployment`.
    pub fn created(&self, deployment: i64, github_id: u64) -> Result<(), JournalError> {
        let mut inner = self.lock();
        inner.append(&Record::Created {
            deployment,
            github_id,
        })?;
        if let Some(tracked) = inner.live.get_mut(&deployment) {
            tracked.github_id = Some(github_id);
        }
        inner.by_github.insert(github_id, deployment);
        Ok(())
    }

    /// Records that GitHub took `state` for `deployment`.
    pub fn posted(&self, deployment: i64, state: GithubState) -> Result<(), JournalError> {
        let mut inner = self.lock();
        inner.append(&Record::Posted { deployment, state })?;
        if let Some(tracked) = inner.live.get_mut(&deployment) {
            tracked.posted.push(state);
        }
        Ok(())
    }

    /// Nothing more is posted for `deployment`.
    pub fn done(&self, deployment: i64) -> Result<(), JournalError> {
        let mut inner = self.lock();
        inner.append(&Record::Done { deployment })?;
        if let Some(tracked) = inner.live.remove(&deployment) {
            if let Some(github_id) = tracked.github_id {
                inner.by_github.remove(&github_id);
            }
        }
        inner.done.insert(deployment);
        while inner.done.len() > DONE_KEPT {
            inner.done.pop_first();
        }
        let kept = inner.live.len() + inner.done.len();
        if inner.records > 2 * kept + 1000 {
            let file = compact(&inner.path, &inner.live, &inner.done)?;
            inner.file = file;
            inner.records = kept;
        }
        Ok(())
    }

    /// The deployment being tracked, as far as it has got.
    pub fn get(&self, deployment: i64) -> Option<Tracked> {
        self.lock().live.get(&deployment).cloned()
    }

    /// Every deployment whose statuses are not all posted, oldest first.
    pub fn pending(&self) -> Vec<i64> {
        self.lock().live.keys().copied().collect()
    }

    /// The Slipway deployment a GitHub deployment was created for, while its
    /// statuses are being reported.
    pub fn by_github_id(&self, github_id: u64) -> Option<i64> {
        self.lock().by_github.get(&github_id).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps as they were before
        // the record that failed; they stay usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).expect("records serialise");
        line.push(b'\n');
        let io = |cause| JournalError::Io {
            path: self.path.clone(),
            cause,
        };
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.records += 1;
        Ok(())
    }
}

fn replay(
    path: &Path,
    file: File,
    live: &mut BTreeMap<i64, Tracked>,
    done: &mut BTreeSet<i64>,
) -> Result<(), JournalError> {
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|cause| JournalError::Io {
            path: path.to_owned(),
            cause,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = match serde_json::from_str(&line) {
            Ok(record) => record,
            Err(err) => {
                // Only the last line can be torn (a crash while appending);
                // what it recorded was never acknowledged.
                tracing::warn!(
                    path = %path.display(),
                    line = number + 1,
                    %err,
                    "skipping an unreadable journal line"
                );
                continue;
            }
        };
        match record {
            Record::Track(tracked) => {
                if !done.contains(&tracked.deployment) {
                    live.insert(tracked.deployment, tracked);
                }
            }
            Record::Created {
                deployment,
                github_id,
            } => {
                if let Some(tracked) = live.get_mut(&deployment) {
                    tracked.github_id = Some(github_id);
                }
            }
            Record::Posted { deployment, state } => {
                if let Some(tracked) = live.get_mut(&deployment) {
                    tracked.posted.push(state);
                }
            }
            Record::Done { deployment } => {
                live.remove(&deployment);
                done.insert(deployment);
            }
        }
    }
    while done.len() > DONE_KEPT {
        done.pop_first();
    }
    Ok(())
}

/// Rewrites the file with only what is needed, atomically; returns it opened
/// for appending.
fn compact(
    path: &Path,
    live: &BTreeMap<i64, Tracked>,
    done: &BTreeSet<i64>,
) -> Result<File, JournalError> {
    let io = |cause| JournalError::Io {
        path: path.to_owned(),
        cause,
    };
    let temp = path.with_extension("jsonl.tmp");
    let mut text = Vec::new();
    for &deployment in done {
        serde_json::to_writer(&mut text, &Record::Done { deployment }).expect("serialise");
        text.push(b'\n');
    }
    for tracked in live.values() {
        serde_json::to_writer(&mut text, &Record::Track(tracked.clone())).expect("serialise");
        text.push(b'\n');
    }
    {
        let mut file = File::create(&temp).map_err(io)?;
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&temp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable.
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    OpenOptions::new().append(true).open(path).map_err(io)
}

fn index(live: &BTreeMap<i64, Tracked>) -> HashMap<u64, i64> {
    live.values()
        .filter_map(|t| t.github_id.map(|id| (id, t.deployment)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(deployment: i64) -> Tracked {
        Tracked {
            deployment,
            repo: "acme/shop".into(),
            github_id: None,
            create: None,
            posted: vec![],
        }
    }

    #[test]
    fn survives_reopening_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        {
            let journal = Journal::open(dir.path()).unwrap();
            assert!(journal.track(tracked(1)).unwrap());
            assert!(!journal.track(tracked(1)).unwrap());
            assert!(journal.track(tracked(2)).unwrap());
            journal.created(1, 6_000_000_001).unwrap();
            journal.posted(1, GithubState::Queued).unwrap();
            journal.posted(2, GithubState::Queued).unwrap();
            journal.done(2).unwrap();
        }
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap();
        file.write_all(b"{\"op\":\"posted\",\"deploym").unwrap();
        drop(file);

        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.pending(), vec![1]);
        let one = journal.get(1).unwrap();
        assert_eq!(one.github_id, Some(6_000_000_001));
        assert_eq!(one.posted, vec![GithubState::Queued]);
        assert_eq!(journal.by_github_id(6_000_000_001), Some(1));
        // A finished deployment is not tracked again.
        assert!(!journal.track(tracked(2)).unwrap());
    }
}

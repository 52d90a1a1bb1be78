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
//! done deployments keep only their id and creation time (the last
//! [`DONE_KEPT`] to finish), so a late redelivery of their hook does not
//! report them twice.
//!
//! A record is of one deployment of one API database: it holds the
//! deployment's id *and* the time the API created it. A database that was
//! reset numbers its deployments from 1 again; a deployment whose creation
//! time is not the recorded one is another deployment, and the old record is
//! replaced (when the new one is tracked) or discarded (when the reporter
//! finds the API's deployment is not the recorded one), with a warning in the
//! log. Records written before creation times were recorded match by id.
//!
//! A line torn by a crash (or a failed write) is skipped on replay, and the
//! next record always starts on a line of its own.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use slipway_client::DateTime;

use super::GithubState;

/// How many finished deployments the journal remembers.
pub const DONE_KEPT: usize = 10_000;
/// The journal's file in the data directory.
pub const FILE_NAME: &str = "github-statuses.jsonl";
/// How far apart two creation times of "the same" deployment may be: the API
/// may answer a time more precise than its database keeps (PostgreSQL rounds
/// to microseconds).
const SAME_CREATION: chrono::TimeDelta = chrono::TimeDelta::milliseconds(1);

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
    /// When the API created it: with the id, what tells it from a deployment
    /// of another API database with the same id. `None` in records written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime>,
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

impl Tracked {
    /// Whether this is the record of the API's deployment created at `created_at`.
    pub fn is_of(&self, created_at: DateTime) -> bool {
        same_creation(self.created_at, Some(created_at))
    }
}

/// Whether two creation times are of one deployment; an unknown one (an old
/// record) matches any.
fn same_creation(a: Option<DateTime>, b: Option<DateTime>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= SAME_CREATION,
        _ => true,
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Track(Tracked),
    Created {
        deployment: i64,
        github_id: u64,
    },
    Posted {
        deployment: i64,
        state: GithubState,
    },
    Done {
        deployment: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created_at: Option<DateTime>,
    },
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
    done: Done,
    /// Records in the file, to know when to compact.
    records: usize,
}

/// The finished deployments, forgotten in the order they finished (not by
/// id: after a database reset the newest have the smallest ids).
#[derive(Debug, Default)]
struct Done {
    /// Deployment → (its creation time, when it finished).
    by_id: HashMap<i64, (Option<DateTime>, u64)>,
    /// (deployment, when it finished), oldest first; an entry whose time is
    /// not the one in `by_id` is of an earlier finish and means nothing.
    order: VecDeque<(i64, u64)>,
    next: u64,
}

impl Done {
    fn insert(&mut self, deployment: i64, created_at: Option<DateTime>) {
        let at = self.next;
        self.next += 1;
        self.by_id.insert(deployment, (created_at, at));
        self.order.push_back((deployment, at));
        while self.by_id.len() > DONE_KEPT {
            let Some((oldest, at)) = self.order.pop_front() else {
                break;
            };
            if self.by_id.get(&oldest).is_some_and(|(_, when)| *when == at) {
                self.by_id.remove(&oldest);
            }
        }
    }

    /// Whether `deployment`, created at `created_at`, is finished.
    fn has(&self, deployment: i64, created_at: Option<DateTime>) -> bool {
        self.by_id
            .get(&deployment)
            .is_some_and(|(recorded, _)| same_creation(*recorded, created_at))
    }

    /// The finished ones, oldest first.
    fn in_order(&self) -> impl Iterator<Item = (i64, Option<DateTime>)> + '_ {
        self.order.iter().filter_map(|(deployment, at)| {
            let (created_at, when) = self.by_id.get(deployment)?;
            (when == at).then_some((*deployment, *created_at))
        })
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }
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
        let mut done = Done::default();
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
    /// tracked already or was finished before. A record of another deployment
    /// with the same id (of another API database) is replaced.
    pub fn track(&self, tracked: Tracked) -> Result<bool, JournalError> {
        let mut inner = self.lock();
        let deployment = tracked.deployment;
        if let Some(old) = inner.live.get(&deployment) {
            if same_creation(old.created_at, tracked.created_at) {
                return Ok(false);
            }
            tracing::warn!(
                deployment,
                recorded_created_at = ?old.created_at,
                created_at = ?tracked.created_at,
                "the status journal had a deployment with this id from another API database; \
                 replacing its record (no more statuses for the old one)"
            );
        } else if inner.done.has(deployment, tracked.created_at) {
            return Ok(false);
        } else if inner.done.by_id.contains_key(&deployment) {
            tracing::info!(
                deployment,
                "the status journal's finished deployment with this id was of another API \
                 database; tracking the new one"
            );
        }
        inner.append(&Record::Track(tracked.clone()))?;
        if let Some(old) = inner.live.remove(&deployment) {
            if let Some(github_id) = old.github_id {
                inner.by_github.remove(&github_id);
            }
        }
        if let Some(github_id) = tracked.github_id {
            inner.by_github.insert(github_id, deployment);
        }
        inner.live.insert(deployment, tracked);
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
        let created_at = inner.live.get(&deployment).and_then(|t| t.created_at);
        inner.append(&Record::Done {
            deployment,
            created_at,
        })?;
        if let Some(tracked) = inner.live.remove(&deployment) {
            if let Some(github_id) = tracked.github_id {
                inner.by_github.remove(&github_id);
            }
        }
        inner.done.insert(deployment, created_at);
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
        let io = |cause| JournalError::Io {
            path: self.path.clone(),
            cause,
        };
        let mut line = Vec::new();
        // After a torn line (a write that failed half-way), the record starts
        // a line of its own instead of being glued to the torn one, which
        // replay would skip with it.
        if !ends_a_line(&mut self.file).map_err(io)? {
            tracing::warn!(path = %self.path.display(), "the status journal's last line is torn; it is left behind");
            line.push(b'\n');
        }
        serde_json::to_writer(&mut line, record).expect("records serialise");
        line.push(b'\n');
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.records += 1;
        Ok(())
    }
}

/// Whether `file` is empty or its last byte ends a line.
fn ends_a_line(file: &mut File) -> std::io::Result<bool> {
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

fn replay(
    path: &Path,
    file: File,
    live: &mut BTreeMap<i64, Tracked>,
    done: &mut Done,
) -> Result<(), JournalError> {
    // Lines as bytes: a line torn inside a multi-byte character is not
    // UTF-8, and is skipped like any other torn line.
    for (number, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|cause| JournalError::Io {
            path: path.to_owned(),
            cause,
        })?;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let record: Record = match serde_json::from_slice(&line) {
            Ok(record) => record,
            Err(err) => {
                // A line torn by a crash while appending; what it recorded
                // was never acknowledged.
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
                // A Track after a Done of the same id is of another
                // deployment (another API database) that reused the id.
                if !done.has(tracked.deployment, tracked.created_at) {
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
            Record::Done {
                deployment,
                created_at,
            } => {
                live.remove(&deployment);
                done.insert(deployment, created_at);
            }
        }
    }
    Ok(())
}

/// Rewrites the file with only what is needed, atomically; returns it opened
/// for appending.
fn compact(path: &Path, live: &BTreeMap<i64, Tracked>, done: &Done) -> Result<File, JournalError> {
    let io = |cause| JournalError::Io {
        path: path.to_owned(),
        cause,
    };
    let temp = path.with_extension("jsonl.tmp");
    let mut text = Vec::new();
    for (deployment, created_at) in done.in_order() {
        let record = Record::Done {
            deployment,
            created_at,
        };
        serde_json::to_writer(&mut text, &record).expect("serialise");
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
    OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .map_err(io)
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
            created_at: None,
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

    #[test]
    fn a_line_torn_inside_a_character_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        {
            let journal = Journal::open(dir.path()).unwrap();
            assert!(journal.track(tracked(1)).unwrap());
        }
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap();
        // "é" is two bytes; the write stopped after the first.
        file.write_all(b"{\"op\":\"track\",\"description\":\"caf\xc3")
            .unwrap();
        drop(file);
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.pending(), vec![1]);
        assert!(journal.track(tracked(2)).unwrap());
        drop(journal);
        assert_eq!(Journal::open(dir.path()).unwrap().pending(), vec![1, 2]);
    }

    #[test]
    fn finished_ids_are_forgotten_in_the_order_they_finished() {
        let mut done = Done::default();
        let old = chrono::Utc::now() - chrono::TimeDelta::days(30);
        for id in 1_000..1_000 + DONE_KEPT as i64 {
            done.insert(id, Some(old));
        }
        // A reset database numbers from 1 again: its ids are the newest, not
        // the first to go.
        let now = chrono::Utc::now();
        done.insert(1, Some(now));
        assert_eq!(done.len(), DONE_KEPT);
        assert!(done.has(1, Some(now)));
        assert!(!done.has(1, Some(old)), "another deployment 1");
        assert!(
            !done.by_id.contains_key(&1_000),
            "the oldest to finish went"
        );
        assert!(done.has(1_001, Some(old)));
        // Finishing an id again keeps it as the newest.
        done.insert(1_001, Some(now));
        done.insert(2, Some(now));
        assert!(done.has(1_001, Some(now)));
        assert!(!done.by_id.contains_key(&1_002));
        assert_eq!(done.in_order().count(), DONE_KEPT);
    }
}

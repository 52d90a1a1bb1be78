//! What a deployment has done to the swarm, on disk: the stack as it was
//! before the first write, and every change since. A runner restarted
//! mid-rollout reads it back, so it judges and rolls back against what the
//! services were before *this* deployment, not what it finds now.
//!
//! One JSON file per deployment under `<workdir>/deployments/`, replaced
//! atomically (written aside, synced, renamed) after every change, and
//! removed once the deployment's end is reported.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::swarm::{Applied, Baseline};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Record {
    /// The stack before the deployment's first write; `None` until then.
    pub baseline: Option<Baseline>,
    pub applied: Applied,
    /// Set once the deployment started putting things back: a runner
    /// restarted meanwhile (its own service may be among those put back)
    /// goes on with the rollback instead of applying the deployment again.
    #[serde(default)]
    pub rolling_back: Option<RollingBack>,
}

/// A rollback under way.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RollingBack {
    /// Why: what failed, or the cancel.
    pub why: String,
    /// Only this service (`rollback: service`); every change when `None`.
    pub only: Option<String>,
    /// A cancel rather than a failure.
    pub cancel: bool,
}

/// The record of one deployment and where it lives.
#[derive(Debug)]
pub struct RecordFile {
    path: PathBuf,
    pub record: Record,
}

impl RecordFile {
    /// The record of deployment `id` in `workdir`, or an empty one. A record
    /// that cannot be read is reported and replaced by an empty one.
    pub fn open(workdir: &Path, id: &str) -> (Self, Option<String>) {
        let path = workdir.join("deployments").join(format!("{id}.json"));
        let (record, problem) = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(record) => (record, None),
                Err(err) => (
                    Record::default(),
                    Some(format!(
                        "the record of what this deployment changed ({}) is unreadable ({err}); \
                         going on without it",
                        path.display()
                    )),
                ),
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => (Record::default(), None),
            Err(err) => (
                Record::default(),
                Some(format!("cannot read {}: {err}", path.display())),
            ),
        };
        (Self { path, record }, problem)
    }

    /// Writes the record where a restart finds it.
    pub fn save(&self) -> std::io::Result<()> {
        save(&self.path, &self.record)
    }

    /// Forgets the record: the deployment is over.
    pub fn remove(&self) {
        if let Err(err) = std::fs::remove_file(&self.path) {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), %err, "cannot remove a deployment's record");
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Saves `record` at `path` so that a crash leaves the old or the new file,
/// never half of one.
pub fn save(path: &Path, record: &Record) -> std::io::Result<()> {
    let dir = path.parent().expect("a record lives in a directory");
    std::fs::create_dir_all(dir)?;
    let aside = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&aside)?;
    file.write_all(&serde_json::to_vec(record).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&aside, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::{Change, ChangeKind};

    #[test]
    fn a_record_survives_a_reopen_and_a_torn_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, problem) = RecordFile::open(dir.path(), "7");
        assert!(problem.is_none());
        file.record.applied.changes.push(Change {
            name: "shop_web".into(),
            id: "abc".into(),
            kind: ChangeKind::Created,
            before: None,
            update_started_before: None,
            since: None,
        });
        file.save().unwrap();
        let (again, problem) = RecordFile::open(dir.path(), "7");
        assert!(problem.is_none());
        assert_eq!(again.record.applied.changes[0].id, "abc");

        std::fs::write(again.path(), b"{\"baseline\": nu").unwrap();
        let (torn, problem) = RecordFile::open(dir.path(), "7");
        assert!(problem.unwrap().contains("unreadable"));
        assert!(torn.record.applied.changes.is_empty());
        torn.remove();
        assert!(!torn.path().exists());
    }
}

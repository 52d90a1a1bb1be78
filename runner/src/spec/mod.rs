//! The deploy spec: `slipway.yml` and the Compose files it names, read at the
//! deployment's commit, merged, interpolated and turned into a [`Plan`].
//!
//! Errors name the file, the line and the key.
//!
//! # Layout
//!
//! - [`deploy_file`]: `slipway.yml` and the choice of environment.
//! - [`yaml`]: parsing with positions, and finding the line of a key path.
//! - [`interpolate`]: `${VAR}` and friends, as Compose defines them.
//! - [`merge`]: Compose override rules for several files.
//! - [`compose`]: the typed Compose model that swarm understands.
//! - [`convert`]: Compose → Engine API objects, with `docker stack deploy`'s
//!   conventions.
//! - [`scalar`]: lenient strings, numbers and booleans, as the CLI casts them.
//! - [`units`]: durations, byte sizes and CPUs as Compose writes them.
//! - [`env_file`]: `env_file:` files, as the Docker CLI reads them.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::plan::Plan;

pub mod compose;
pub mod convert;
pub mod deploy_file;
pub mod env_file;
pub mod interpolate;
pub mod merge;
pub mod scalar;
pub mod units;
pub mod watch;
pub mod yaml;

/// The largest file a spec may read (`slipway.yml`, a Compose file, an env
/// file, a config or secret's file): a repository cannot make the runner
/// hold an arbitrary amount of memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The error for a file over [`MAX_FILE_BYTES`].
pub(crate) fn too_large(path: &str, size: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "{path} is {size} bytes, more than the {} MiB a file the spec reads may be",
            MAX_FILE_BYTES >> 20
        ),
    )
}

/// Reads files of the repository at the deployment's commit.
pub trait Files {
    /// The content of `path` (relative to the repository root), or `None`
    /// when there is no such file.
    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>>;
}

/// Files in a directory on disk, for callers that have the repository as a
/// work tree rather than a commit (deployments and `slipway-runner plan`
/// read commits with [`crate::git::CommitFiles`]; tests that compare a plan
/// with `docker stack deploy` of the same directory use this).
///
/// Paths that leave the directory (`..`, absolute paths) are refused, so a
/// spec cannot read the runner's own files (its secrets file, SSH keys) into
/// a config or secret.
#[derive(Clone, Debug)]
pub struct DirFiles(pub PathBuf);

impl Files for DirFiles {
    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        let relative = Path::new(path);
        let escapes = relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if escapes {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{path}: only paths inside the repository can be read"),
            ));
        }
        let path_on_disk = self.0.join(relative);
        match std::fs::metadata(&path_on_disk) {
            Ok(meta) if meta.len() > MAX_FILE_BYTES => return Err(too_large(path, meta.len())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        match std::fs::read(path_on_disk) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Files held in memory: for tests, and for callers that read the commit
/// straight out of git objects.
impl Files for BTreeMap<String, Vec<u8>> {
    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.get(&normalize_path(path)).cloned())
    }
}

/// What a deployment knows that the spec may use. `Debug` names the
/// secrets but never shows their values.
#[derive(Clone, Default)]
pub struct Context {
    pub application: String,
    pub environment: String,
    /// The deployment's id, for `SLIPWAY_DEPLOYMENT` and the deployment label.
    pub deployment: String,
    pub sha: String,
    pub ref_name: String,
    /// Values from the runner's secrets file: available to interpolation and
    /// to swarm secrets, and masked in every log line.
    pub secrets: BTreeMap<String, String>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("application", &self.application)
            .field("environment", &self.environment)
            .field("deployment", &self.deployment)
            .field("sha", &self.sha)
            .field("ref_name", &self.ref_name)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A spec or Compose error, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default(), key.as_ref().map(|k| format!(": {k}")).unwrap_or_default())]
pub struct SpecError {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl SpecError {
    /// An error about a whole file (it is missing, unreadable).
    pub(crate) fn file(file: &str, message: impl Into<String>) -> Self {
        SpecError {
            file: file.to_owned(),
            line: None,
            key: None,
            message: message.into(),
        }
    }
}

/// Reads `spec_path` and its Compose files and plans the stack for `ctx.environment`.
pub fn load(files: &dyn Files, spec_path: &str, ctx: &Context) -> Result<Plan, SpecError> {
    let spec = deploy_file::read(files, spec_path, ctx)?;
    let compose = compose::read(files, &spec, ctx)?;
    convert::plan(files, &spec, &compose, ctx)
}

/// `./a/../b.yml` → `b.yml`: Compose paths are relative to the repository
/// root here, and the same file must have one name in errors and look-ups.
pub(crate) fn normalize_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Resolves `path` as written in the file `from` (relative to that file's
/// directory, as Compose resolves `env_file:` and `file:`).
pub(crate) fn relative_to(from: &str, path: &str) -> String {
    if path.starts_with('/') {
        return path.to_owned();
    }
    match from.rfind('/') {
        Some(i) => normalize_path(&format!("{}/{}", &from[..i], path)),
        None => normalize_path(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_context_and_of_a_data_plan_shows_no_secret_value() {
        let ctx = Context {
            application: "shop".into(),
            secrets: BTreeMap::from([("DB_PASSWORD".into(), "hunter2-secret".into())]),
            ..Context::default()
        };
        let shown = format!("{ctx:?}");
        assert!(
            shown.contains("DB_PASSWORD") && !shown.contains("hunter2"),
            "{shown}"
        );
        let data = crate::plan::DataPlan {
            name: "shop_db_0123".into(),
            compose_name: "db".into(),
            external: false,
            data: b"hunter2-secret".to_vec(),
            labels: BTreeMap::new(),
        };
        let shown = format!("{data:?}");
        assert!(
            shown.contains("14 bytes") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn paths_are_normalised_relative_to_their_file() {
        assert_eq!(normalize_path("./a/../b.yml"), "b.yml");
        assert_eq!(
            relative_to("deploy/docker-compose.yml", "./app.env"),
            "deploy/app.env"
        );
        assert_eq!(
            relative_to("docker-compose.yml", "conf/a.conf"),
            "conf/a.conf"
        );
        assert_eq!(relative_to("a/dc.yml", "../b.conf"), "b.conf");
    }

    #[test]
    fn dir_files_refuse_paths_outside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "1").unwrap();
        let files = DirFiles(dir.path().to_owned());
        assert_eq!(files.read("x").unwrap(), Some(b"1".to_vec()));
        assert_eq!(files.read("./x").unwrap(), Some(b"1".to_vec()));
        assert_eq!(files.read("missing").unwrap(), None);
        assert!(files.read("../etc/passwd").is_err());
        assert!(files.read("/etc/passwd").is_err());
    }
}

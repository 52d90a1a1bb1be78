//! The deploy spec: `slipway.yml` and the Compose files it names, read at the
//! deployment's commit, merged, interpolated and turned into a [`Plan`].
//!
//! Errors name the file, the line and the key.

use std::collections::BTreeMap;

use crate::plan::Plan;

/// Reads files of the repository at the deployment's commit.
pub trait Files {
    /// The content of `path` (relative to the repository root), or `None`
    /// when there is no such file.
    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>>;
}

/// What a deployment knows that the spec may use.
#[derive(Clone, Debug, Default)]
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

/// A spec or Compose error, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default(), key.as_ref().map(|k| format!(": {k}")).unwrap_or_default())]
pub struct SpecError {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

/// Reads `spec_path` and its Compose files and plans the stack for `ctx.environment`.
pub fn load(files: &dyn Files, spec_path: &str, ctx: &Context) -> Result<Plan, SpecError> {
    let _ = (files, spec_path, ctx);
    Err(SpecError {
        file: spec_path.to_owned(),
        line: None,
        key: None,
        message: "reading specs is not built yet".into(),
    })
}

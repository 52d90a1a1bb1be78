//! What the commands print, read from the API's answers.
//!
//! Each generated operation has its own copy of a fragment's types; the
//! answers also derive `Serialize`, so they are read here once, by their
//! GraphQL field names, into the types the tables are drawn from.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Re-reads a generated answer as a view type (the same GraphQL field names).
pub fn read<T: Serialize, V: DeserializeOwned>(answer: &T) -> V {
    serde_json::to_value(answer)
        .and_then(serde_json::from_value)
        .expect("the view types follow the operations' fields")
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    pub number: i64,
    pub name: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub sha: Option<String>,
    pub task: String,
    pub status: String,
    pub phase: Option<String>,
    pub message: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub url: Option<String>,
    pub cancel_requested: bool,
    pub log_count: i64,
    /// What it waits for while QUEUED (a freeze window's end, checks, an approval).
    pub gate: Option<Gate>,
    pub application: Named,
    pub environment: Named,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    pub kind: String,
    pub waiting_for: String,
}

/// A CI check as the provider last reported it.
#[derive(Deserialize, Serialize, Debug, Clone)]
pub struct Check {
    pub name: String,
    pub state: String,
    pub url: Option<String>,
}

impl Deployment {
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "SUCCEEDED" | "FAILED" | "CANCELLED")
    }
}

#[derive(Deserialize, Serialize, Debug, Clone)]
pub struct Named {
    pub name: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    pub name: String,
    pub url: Option<String>,
    pub auto_deploy_ref: Option<String>,
    pub application: Named,
    pub lock: Option<Lock>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Lock {
    pub locked_by: String,
    pub locked_at: String,
    pub reason: String,
}

#[derive(Deserialize, Debug, Clone)]
pub struct LogLine {
    pub seq: i64,
    pub at: String,
    pub stream: String,
    pub text: String,
}

/// A release as `slipway releases` reads it.
#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub deployment: Named,
    pub sha: Option<String>,
    pub task: String,
    pub created_by: String,
    pub deployed_at: Option<String>,
    pub replaced_at: Option<String>,
    pub services: Vec<Service>,
}

/// An image a service of a release runs.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub image: String,
    pub digest: Option<String>,
}

/// An environment's current release, as `status` reads it.
#[derive(Deserialize, Debug, Clone)]
pub struct Placed {
    pub name: String,
    pub release: Option<Current>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct Current {
    pub deployment: IdName,
    pub sha: Option<String>,
    pub services: Vec<Service>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct IdName {
    pub id: String,
    pub name: String,
}

/// What a rollback answer adds to a deployment.
#[derive(Deserialize, Debug, Clone)]
pub struct Rollback {
    pub description: Option<String>,
    pub restores: Option<Restored>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct Restored {
    pub deployment: Named,
    pub sha: Option<String>,
}

/// Short form of a commit id.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// `2026-11-22T05:33:53.123Z` → `2026-11-22 05:33:53`.
pub fn time(at: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(at) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => at.to_owned(),
    }
}

/// How long from `from` to `to` (RFC 3339), to the minute once it is long:
/// `45s`, `12m 5s`, `5h 12m`, `3d 4h`.
pub fn duration(from: &str, to: &str) -> String {
    let (Ok(from), Ok(to)) = (
        chrono::DateTime::parse_from_rfc3339(from),
        chrono::DateTime::parse_from_rfc3339(to),
    ) else {
        return "-".into();
    };
    let secs = (to - from).num_seconds().max(0);
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// A plain table: columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

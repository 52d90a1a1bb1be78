//! The commit graph: the commits of an application's repository that its
//! runners reported while deploying, and how far apart two of them are.
//!
//! The API holds no git. A runner walks its mirror from the commit it deploys
//! back to the commits of the application's releases ([`release_shas`]), at
//! most [`MAX_REPORT`] commits, and reports what it walked ([`report`]). So
//! the graph is partial by design: a commit whose parents were never reported
//! (the walk was cut short, or the mirror is shallow there) is an *edge*, and
//! a distance whose walks end at different edges is not exact.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use sea_orm::{Set, TransactionTrait};

use crate::db::entities::deployment::DeploymentStatus;
use crate::db::entities::{commit, deployment};
use crate::error::{quote, ApiError, ApiResult};
use crate::leases::{self, Holder};
use crate::runners;
use crate::state::AppState;

/// The most commits one report may carry (and a runner walks).
pub const MAX_REPORT: usize = 1000;
/// The most release commits [`release_shas`] returns.
pub const MAX_RELEASE_SHAS: u64 = 1000;
/// Longest subject stored, in characters; a longer one is cut.
const MAX_SUBJECT: usize = 200;
/// Rows per `INSERT`, well under SQLite's limit on bound parameters.
const INSERT_CHUNK: usize = 200;

/// A commit as a runner reports it.
#[derive(Clone, Debug)]
pub struct NewCommit {
    pub sha: String,
    /// `None` when the runner does not know them (a shallow mirror's edge);
    /// empty for a root commit.
    pub parents: Option<Vec<String>>,
    pub subject: Option<String>,
    pub committed_at: Option<DateTime<Utc>>,
}

/// Whether `sha` is a full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase
/// hex digits.
pub fn is_sha(sha: &str) -> bool {
    matches!(sha.len(), 40 | 64)
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn validate(commits: &[NewCommit]) -> ApiResult<()> {
    if commits.is_empty() {
        return Err(ApiError::BadInput("`commits` is empty".into()));
    }
    if commits.len() > MAX_REPORT {
        return Err(ApiError::BadInput(format!(
            "{} commits in one report; at most {MAX_REPORT}",
            commits.len()
        )));
    }
    for (i, c) in commits.iter().enumerate() {
        if !is_sha(&c.sha) {
            return Err(ApiError::BadInput(format!(
                "commit {i}: `sha` {} is not a full commit id (40 or 64 lowercase hex digits)",
                quote(&c.sha)
            )));
        }
        for parent in c.parents.iter().flatten() {
            if !is_sha(parent) {
                return Err(ApiError::BadInput(format!(
                    "commit {i} ({}): parent {} is not a full commit id (40 or 64 lowercase \
                     hex digits)",
                    c.sha,
                    quote(parent)
                )));
            }
        }
    }
    Ok(())
}

/// Stores the commits a runner walked while deploying `id`, which `holder`
/// holds (the lease is renewed as by a heartbeat). A commit stored before
/// stays as it was, except that parents that were not known are filled in.
/// Returns how many commits were new.
pub async fn report(
    state: &AppState,
    holder: Holder<'_>,
    id: i64,
    commits: Vec<NewCommit>,
) -> ApiResult<u64> {
    if let Some(instance) = holder.instance {
        runners::validate_instance(instance)?;
    }
    validate(&commits)?;
    let now = state.clock.now();
    let txn = state.db.begin().await?;
    // The first statement renews the lease and so takes the write lock
    // (SQLite) or the deployment's row lock (PostgreSQL) at once.
    let held = deployment::Entity::update_many()
        .col_expr(deployment::Column::LastHeartbeatAt, Expr::value(now))
        .col_expr(
            deployment::Column::LeaseExpiresAt,
            Expr::value(now + state.settings.lease),
        )
        .filter(deployment::Column::Id.eq(id))
        .filter(deployment::Column::Status.eq(DeploymentStatus::InProgress))
        .filter(holder.holds())
        .exec_with_returning(&txn)
        .await?
        .pop();
    let Some(held) = held else {
        txn.rollback().await?;
        return Err(leases::not_held(state, holder, id).await);
    };
    let application_id = held.application_id;
    let mut new = 0;
    for chunk in commits.chunks(INSERT_CHUNK) {
        let rows = chunk.iter().map(|c| commit::ActiveModel {
            application_id: Set(application_id),
            sha: Set(c.sha.clone()),
            parents: Set(c.parents.as_ref().map(|p| p.join(" "))),
            subject: Set(c
                .subject
                .as_deref()
                .map(|s| s.chars().take(MAX_SUBJECT).collect())),
            committed_at: Set(c.committed_at),
        });
        new += commit::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([commit::Column::ApplicationId, commit::Column::Sha])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    // Parents learnt since: a shallow mirror's edge reported again from a
    // mirror that has its history.
    let known: HashMap<&str, &Vec<String>> = commits
        .iter()
        .filter_map(|c| Some((c.sha.as_str(), c.parents.as_ref()?)))
        .collect();
    if !known.is_empty() {
        let unknown: Vec<String> = commit::Entity::find()
            .select_only()
            .column(commit::Column::Sha)
            .filter(commit::Column::ApplicationId.eq(application_id))
            .filter(commit::Column::Parents.is_null())
            .filter(commit::Column::Sha.is_in(known.keys().copied()))
            .into_tuple()
            .all(&txn)
            .await?;
        for sha in unknown {
            commit::Entity::update_many()
                .col_expr(
                    commit::Column::Parents,
                    Expr::value(known[sha.as_str()].join(" ")),
                )
                .filter(commit::Column::ApplicationId.eq(application_id))
                .filter(commit::Column::Sha.eq(sha))
                .exec(&txn)
                .await?;
        }
    }
    txn.commit().await?;
    tracing::info!(
        deployment = id,
        reported = commits.len(),
        new,
        "commits reported"
    );
    Ok(new)
}

/// The commits of the application's newest releases (of every
/// environment), each once, newest first: where a runner's walk stops.
pub async fn release_shas(
    db: &impl ConnectionTrait,
    application_id: i64,
) -> ApiResult<Vec<String>> {
    Ok(deployment::Entity::find()
        .select_only()
        .column(deployment::Column::Sha)
        .column_as(deployment::Column::Id.max(), "newest")
        .filter(deployment::Column::ApplicationId.eq(application_id))
        .filter(crate::deployments::released())
        .filter(deployment::Column::Sha.is_not_null())
        .group_by(deployment::Column::Sha)
        .order_by_desc(Expr::cust("newest"))
        .limit(MAX_RELEASE_SHAS)
        .into_tuple::<(String, i64)>()
        .all(db)
        .await?
        .into_iter()
        .map(|(sha, _)| sha)
        .collect())
}

/// How far commit `here` is from commit `there`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Distance {
    /// Commits reachable from `there` and not from `here`.
    pub behind: u64,
    /// Commits reachable from `here` and not from `there`.
    pub ahead: u64,
    /// Both walks ended at the same edges of the known graph (the roots, or
    /// commits whose parents are not known): nothing was left out. When
    /// false, the side whose walk met an edge the other did not may have
    /// more commits than counted.
    pub exact: bool,
}

/// The distance between commits `here` and `there` of an application, from
/// the commits reported; `None` when either commit is not known.
pub async fn distance(
    db: &impl ConnectionTrait,
    application_id: i64,
    here: &str,
    there: &str,
) -> ApiResult<Option<Distance>> {
    if here == there {
        return Ok(Some(Distance {
            behind: 0,
            ahead: 0,
            exact: true,
        }));
    }
    Ok(graph(db, application_id).await?.distance(here, there))
}

/// The commits of an application reported so far.
pub async fn graph(db: &impl ConnectionTrait, application_id: i64) -> ApiResult<Graph> {
    let rows: Vec<(String, Option<String>)> = commit::Entity::find()
        .select_only()
        .column(commit::Column::Sha)
        .column(commit::Column::Parents)
        .filter(commit::Column::ApplicationId.eq(application_id))
        .into_tuple()
        .all(db)
        .await?;
    Ok(Graph::new(rows.into_iter().map(|(sha, parents)| {
        let parents = parents.map(|p| p.split_whitespace().map(str::to_owned).collect());
        (sha, parents)
    })))
}

/// The known commits of a repository and their parents, in memory.
#[derive(Debug, Default)]
pub struct Graph {
    /// Each commit's parents; `None` when they are not known.
    parents: HashMap<String, Option<Vec<String>>>,
}

/// What a walk from one commit reached.
struct Walk<'g> {
    /// The known commits reachable.
    known: HashSet<&'g str>,
    /// Where the known graph ends on the way: shas of commits never
    /// reported, and commits whose parents are not known. Roots are no edge.
    edges: HashSet<&'g str>,
}

impl Graph {
    pub fn new(commits: impl IntoIterator<Item = (String, Option<Vec<String>>)>) -> Self {
        Self {
            parents: commits.into_iter().collect(),
        }
    }

    fn walk<'g>(&'g self, start: &'g str) -> Walk<'g> {
        let mut walk = Walk {
            known: HashSet::new(),
            edges: HashSet::new(),
        };
        let mut stack = vec![start];
        while let Some(sha) = stack.pop() {
            if walk.known.contains(sha) || walk.edges.contains(sha) {
                continue;
            }
            match self.parents.get_key_value(sha) {
                None => {
                    walk.edges.insert(sha);
                }
                Some((sha, None)) => {
                    walk.known.insert(sha);
                    walk.edges.insert(sha);
                }
                Some((sha, Some(parents))) => {
                    walk.known.insert(sha);
                    stack.extend(parents.iter().map(String::as_str));
                }
            }
        }
        walk
    }

    /// The known commits reachable from `here` and not from `there` (all
    /// those reachable from `here` without one): what a release brings.
    pub fn since(&self, here: &str, there: Option<&str>) -> Vec<String> {
        let new = self.walk(here);
        let old = there.map(|there| self.walk(there));
        let mut since: Vec<String> = new
            .known
            .into_iter()
            .filter(|sha| old.as_ref().is_none_or(|old| !old.known.contains(sha)))
            .map(str::to_owned)
            .collect();
        since.sort();
        since
    }

    /// How far `here` is from `there`; `None` when either is not known.
    pub fn distance(&self, here: &str, there: &str) -> Option<Distance> {
        let (here, _) = self.parents.get_key_value(here)?;
        let (there, _) = self.parents.get_key_value(there)?;
        let from_here = self.walk(here);
        let from_there = self.walk(there);
        Some(Distance {
            behind: from_there.known.difference(&from_here.known).count() as u64,
            ahead: from_here.known.difference(&from_there.known).count() as u64,
            exact: from_here.edges == from_there.edges,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph from `("c", "b a")` pairs; `"?"` for parents not known.
    fn graph(commits: &[(&str, &str)]) -> Graph {
        Graph::new(commits.iter().map(|(sha, parents)| {
            let parents =
                (*parents != "?").then(|| parents.split_whitespace().map(str::to_owned).collect());
            (sha.to_string(), parents)
        }))
    }

    fn d(behind: u64, ahead: u64, exact: bool) -> Option<Distance> {
        Some(Distance {
            behind,
            ahead,
            exact,
        })
    }

    #[test]
    fn a_line_of_commits() {
        let g = graph(&[("a", ""), ("b", "a"), ("c", "b"), ("d", "c")]);
        assert_eq!(g.distance("b", "d"), d(2, 0, true));
        assert_eq!(g.distance("d", "b"), d(0, 2, true));
        assert_eq!(g.distance("c", "c"), d(0, 0, true));
        assert_eq!(g.distance("a", "x"), None, "x was never reported");
    }

    #[test]
    fn diverged_branches_count_from_where_they_forked() {
        //   a - b - c - d        main
        //        \
        //         e - f          feature
        let g = graph(&[
            ("a", ""),
            ("b", "a"),
            ("c", "b"),
            ("d", "c"),
            ("e", "b"),
            ("f", "e"),
        ]);
        assert_eq!(g.distance("f", "d"), d(2, 2, true));
        assert_eq!(g.distance("d", "f"), d(2, 2, true));
        assert_eq!(g.distance("e", "d"), d(2, 1, true));
    }

    #[test]
    fn a_merge_brings_both_sides() {
        //   a - b - c ----- m    main, merging feature
        //        \         /
        //         e ----- f
        let g = graph(&[
            ("a", ""),
            ("b", "a"),
            ("c", "b"),
            ("e", "b"),
            ("f", "e"),
            ("m", "c f"),
        ]);
        assert_eq!(g.distance("c", "m"), d(3, 0, true), "e, f and m");
        assert_eq!(g.distance("f", "m"), d(2, 0, true), "c and m");
        assert_eq!(g.distance("m", "f"), d(0, 2, true));
        assert_eq!(g.distance("b", "m"), d(4, 0, true));
    }

    #[test]
    fn a_history_cut_short_is_no_exact_figure() {
        // `c`'s parent `b` was never reported: the walk from `d` ends there.
        let g = graph(&[("c", "b"), ("d", "c")]);
        assert_eq!(
            g.distance("c", "d"),
            d(1, 0, true),
            "both walks end at the same edge"
        );
        // Another line, whose walk ends at an edge the first does not reach.
        let g = graph(&[("c", "b"), ("d", "c"), ("x", "?"), ("y", "x"), ("z", "y d")]);
        assert_eq!(g.distance("d", "z"), d(3, 0, false), "at least x, y, z");
        // A shallow mirror's edge: a commit known, its parents not.
        let g = graph(&[("s", "?"), ("t", "s")]);
        assert_eq!(g.distance("s", "t"), d(1, 0, true));
        let g = graph(&[("a", ""), ("s", "?"), ("t", "s")]);
        assert_eq!(g.distance("a", "t"), d(2, 1, false));
    }

    #[test]
    fn commit_ids_are_full_lowercase_hex() {
        assert!(is_sha(&"a".repeat(40)));
        assert!(is_sha(&"0".repeat(64)));
        assert!(!is_sha(&"A".repeat(40)));
        assert!(!is_sha(&"a".repeat(39)));
        assert!(!is_sha("main"));
        assert!(!is_sha(&"g".repeat(40)));
    }
}

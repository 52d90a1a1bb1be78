//! Fetching the deployment's commit with git2.
//!
//! Each repository has a bare mirror under `<workdir>/mirrors`, kept between
//! deployments, so history is fetched once and a redeploy of a known commit
//! touches no network. A fetch asks for the exact commit, shallow where the
//! server allows it, and falls back to the ref (shallow, then whole) where it
//! does not. Files are read from the commit's tree in the object database: no
//! checkout, so no workspace is left behind.
//!
//! Credentials: an SSH key, offered only to servers whose host key is in the
//! `known_hosts` file (see `known_hosts.rs`); an HTTPS token, sent only over
//! `https://` to the repository's own host; extra CAs for HTTPS servers,
//! which libgit2 holds per process.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use git2::{
    CertificateCheckStatus, Cred, ErrorClass, ErrorCode, FetchOptions, Oid, RemoteCallbacks,
    Repository,
};
use sha2::{Digest, Sha256};
use slipway_secret::Secret;

use crate::spec::Files;

mod known_hosts;

/// How to authenticate to repositories.
#[derive(Clone, Default)]
pub struct Credentials {
    /// Private key for `ssh://` and `git@host:` URLs.
    pub ssh_key: Option<PathBuf>,
    /// Token for HTTPS URLs (sent as the password of `x-access-token`).
    pub token: Option<Secret>,
    /// OpenSSH `known_hosts` file that SSH host keys must be in.
    pub known_hosts: Option<PathBuf>,
    /// CA certificates (PEM) that HTTPS servers may be signed by, trusted
    /// besides the system's. libgit2 holds them per process: every
    /// `Mirrors` of a process must name the same file, or none.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("ssh_key", &self.ssh_key)
            .field("token", &self.token)
            .field("known_hosts", &self.known_hosts)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("repository {url} cannot be reached: {message}")]
    Unreachable { url: String, message: String },
    #[error("repository {url} refused access: {message}")]
    Unauthorized { url: String, message: String },
    /// The server is not the one the runner knows: an SSH host key not in
    /// `known_hosts` (or another than the one there), a TLS certificate no
    /// trusted CA signed. Nothing was sent to it.
    #[error("repository {url} is not trusted: {message}")]
    Untrusted { url: String, message: String },
    #[error("commit {sha} is not in {url} (fetched {fetched})")]
    UnknownCommit {
        url: String,
        sha: String,
        fetched: String,
    },
    #[error("ref `{reference}` is not in {url}")]
    UnknownRef { url: String, reference: String },
    #[error("git: {0}")]
    Other(String),
    #[error("fetching {url} took longer than {0:?}", .timeout)]
    Timeout { url: String, timeout: Duration },
}

/// What a fetch got.
#[derive(Debug)]
pub struct Fetched {
    /// The commit, resolved from the ref when no sha was given.
    pub sha: String,
    /// The bare mirror the commit is in.
    pub mirror: PathBuf,
    /// Whether the commit was already in the mirror (no network used).
    pub cached: bool,
    /// How it was fetched (`sha, shallow`, `ref main`, ...), for the log.
    pub how: String,
    pub received_bytes: usize,
    pub took: Duration,
}

/// Depth meaning "the whole history".
const FULL: i32 = 0;
/// libgit2's `GIT_FETCH_DEPTH_UNSHALLOW`.
const UNSHALLOW: i32 = i32::MAX;

/// How long a git server may stay silent (on connect, or mid-fetch) before
/// the fetch fails.
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);

/// The bare mirrors of one runner.
#[derive(Clone, Debug)]
pub struct Mirrors {
    root: PathBuf,
    credentials: Credentials,
    /// How long a server may stay silent; libgit2 keeps this per process, so
    /// the first mirrors to fetch set it for all.
    stall: Duration,
}

impl Mirrors {
    pub fn new(root: impl Into<PathBuf>, credentials: Credentials) -> Self {
        Self {
            root: root.into(),
            credentials,
            stall: DEFAULT_STALL,
        }
    }

    /// Mirrors whose servers may stay silent for `stall` at most.
    pub fn with_stall(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    /// Where the mirror of `url` lives.
    pub fn path(&self, url: &str) -> PathBuf {
        let digest = hex::encode(&Sha256::digest(url.as_bytes())[..8]);
        let name: String = url
            .rsplit(['/', ':'])
            .next()
            .unwrap_or("repo")
            .trim_end_matches(".git")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(40)
            .collect();
        self.root.join(format!("{name}-{digest}.git"))
    }

    /// Makes sure the commit of `reference` (or `sha`, when known) is in the
    /// mirror of `url`, off the async runtime and within `timeout`.
    pub async fn fetch(
        &self,
        url: &str,
        reference: &str,
        sha: Option<&str>,
        timeout: Duration,
    ) -> Result<Fetched, GitError> {
        let this = self.clone();
        let (url, reference, sha) = (url.to_owned(), reference.to_owned(), sha.map(str::to_owned));
        let shown = redact_url(&url);
        // libgit2 itself gives up at the deadline too, so a stuck server does
        // not keep the mirror's lock after the caller stopped waiting.
        let deadline = Instant::now() + timeout;
        let work = tokio::task::spawn_blocking(move || {
            this.fetch_blocking(&url, &reference, sha.as_deref(), deadline)
        });
        match tokio::time::timeout(timeout, work).await {
            Ok(joined) => joined.map_err(|err| GitError::Other(err.to_string()))?,
            Err(_) => Err(GitError::Timeout {
                url: shown,
                timeout,
            }),
        }
    }

    /// Whether commit `older` is `newer` or one of its ancestors, fetching
    /// `newer` (and, in a shallow mirror, the history between) as needed.
    pub async fn contains(
        &self,
        url: &str,
        newer: &str,
        older: &str,
        timeout: Duration,
    ) -> Result<bool, GitError> {
        if newer == older {
            return Ok(true);
        }
        let fetched = self.fetch(url, newer, Some(newer), timeout).await?;
        let this = self.clone();
        let shown = redact_url(url);
        let (url, newer, older) = (url.to_owned(), newer.to_owned(), older.to_owned());
        let deadline = Instant::now() + timeout;
        let check = tokio::task::spawn_blocking(move || {
            let descends = |repo: &Repository| -> Result<bool, GitError> {
                let newer = Oid::from_str(&newer).map_err(other)?;
                let older = Oid::from_str(&older).map_err(other)?;
                repo.graph_descendant_of(newer, older).map_err(other)
            };
            let repo = Repository::open_bare(&fetched.mirror).map_err(other)?;
            if descends(&repo)? || !repo.is_shallow() {
                return descends(&repo);
            }
            // A shallow mirror may lack the commits between: fetch them.
            let lock = mirror_lock(&fetched.mirror);
            let _held = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            this.fetch_refspecs(
                &repo,
                &url,
                &[
                    "+refs/heads/*:refs/remotes/origin/*".into(),
                    "+refs/tags/*:refs/tags/*".into(),
                ],
                FULL,
                deadline,
            )
            .map_err(|err| classify(&url, err))?;
            descends(&repo)
        });
        match tokio::time::timeout(timeout, check).await {
            Ok(joined) => joined.map_err(|err| GitError::Other(err.to_string()))?,
            Err(_) => Err(GitError::Timeout {
                url: shown,
                timeout,
            }),
        }
    }

    /// The paths that differ between commits `from` and `to` of the
    /// repository at `url` (added, removed or changed files), fetching `from`
    /// into the mirror when it is missing. `to` must have been fetched.
    pub async fn changed_paths(
        &self,
        url: &str,
        from: &str,
        to: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, GitError> {
        let fetched = self.fetch(url, from, Some(from), timeout).await?;
        let (from, to) = (from.to_owned(), to.to_owned());
        let diff = tokio::task::spawn_blocking(move || -> Result<Vec<String>, GitError> {
            let repo = Repository::open_bare(&fetched.mirror).map_err(other)?;
            let tree = |sha: &str| -> Result<git2::Tree<'_>, GitError> {
                let oid = Oid::from_str(sha).map_err(other)?;
                repo.find_commit(oid).and_then(|c| c.tree()).map_err(other)
            };
            let diff = repo
                .diff_tree_to_tree(Some(&tree(&from)?), Some(&tree(&to)?), None)
                .map_err(other)?;
            let mut paths = Vec::new();
            for delta in diff.deltas() {
                for file in [delta.old_file(), delta.new_file()] {
                    if let Some(path) = file.path().and_then(|p| p.to_str()) {
                        if !paths.iter().any(|p| p == path) {
                            paths.push(path.to_owned());
                        }
                    }
                }
            }
            Ok(paths)
        });
        diff.await.map_err(|err| GitError::Other(err.to_string()))?
    }

    /// The commits of the mirror of `url` reachable from `sha` (which must
    /// have been fetched) and from none of `known`, newest first, at most
    /// `cap`: what the API's commit graph may lack after a deployment of
    /// `sha`. Shas in `known` that the mirror lacks are passed over.
    pub async fn commits(
        &self,
        url: &str,
        sha: &str,
        known: Vec<String>,
        cap: usize,
    ) -> Result<Vec<Commit>, GitError> {
        let mirror = self.path(url);
        let sha = sha.to_owned();
        let walk = tokio::task::spawn_blocking(move || {
            let repo = Repository::open_bare(&mirror).map_err(other)?;
            commits_since(&repo, &sha, &known, cap).map_err(other)
        });
        walk.await.map_err(|err| GitError::Other(err.to_string()))?
    }

    /// Deepens a shallow mirror of `url` to the `depth` commits of `sha`'s
    /// history (the commit by sha, else `reference`), within `timeout`.
    /// Answers whether it fetched: a mirror that is not shallow is left alone.
    pub async fn deepen(
        &self,
        url: &str,
        reference: &str,
        sha: &str,
        depth: i32,
        timeout: Duration,
    ) -> Result<bool, GitError> {
        let this = self.clone();
        let path = self.path(url);
        let shown = redact_url(url);
        let (url, reference, sha) = (url.to_owned(), reference.to_owned(), sha.to_owned());
        let deadline = Instant::now() + timeout;
        let work = tokio::task::spawn_blocking(move || -> Result<bool, GitError> {
            set_process_options(this.stall, this.credentials.ca_file.as_deref())?;
            let lock = mirror_lock(&path);
            let _held = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let repo = Repository::open_bare(&path).map_err(other)?;
            if !repo.is_shallow() {
                return Ok(false);
            }
            let by_sha = this.fetch_refspecs(&repo, &url, &[sha], depth, deadline);
            if by_sha.is_ok() {
                return Ok(true);
            }
            let by_ref = [
                format!("+refs/heads/{reference}:refs/remotes/origin/{reference}"),
                format!("+refs/tags/{reference}:refs/tags/{reference}"),
            ];
            this.fetch_refspecs(&repo, &url, &by_ref, depth, deadline)
                .map(|_| true)
                .map_err(|err| classify(&url, err))
        });
        match tokio::time::timeout(timeout, work).await {
            Ok(joined) => joined.map_err(|err| GitError::Other(err.to_string()))?,
            Err(_) => Err(GitError::Timeout {
                url: shown,
                timeout,
            }),
        }
    }

    fn fetch_blocking(
        &self,
        url: &str,
        reference: &str,
        sha: Option<&str>,
        deadline: Instant,
    ) -> Result<Fetched, GitError> {
        set_process_options(self.stall, self.credentials.ca_file.as_deref())?;
        let started = Instant::now();
        let path = self.path(url);
        // One fetch per mirror at a time: a fetch that timed out keeps running
        // off the runtime, and the next one must not race it.
        let lock = mirror_lock(&path);
        let _held = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        std::fs::create_dir_all(&self.root).map_err(|e| GitError::Other(e.to_string()))?;
        let repo = match Repository::open_bare(&path) {
            Ok(repo) => repo,
            Err(_) => Repository::init_bare(&path).map_err(other)?,
        };
        if let Some(sha) = sha {
            let oid = Oid::from_str(sha).map_err(|_| GitError::UnknownCommit {
                url: redact_url(url),
                sha: sha.to_owned(),
                fetched: "nothing: not a commit id".into(),
            })?;
            if repo.find_commit(oid).is_ok() {
                return Ok(Fetched {
                    sha: sha.to_owned(),
                    mirror: path,
                    cached: true,
                    how: "already in the mirror".into(),
                    received_bytes: 0,
                    took: started.elapsed(),
                });
            }
        }

        let local = is_local(url);
        // `HEAD` is the remote's default branch; anything else a branch or a tag.
        let (branch_spec, tag_spec) = if reference == "HEAD" {
            let head = "+HEAD:refs/remotes/origin/HEAD".to_owned();
            (head.clone(), head)
        } else {
            (
                format!("+refs/heads/{reference}:refs/remotes/origin/{reference}"),
                format!("+refs/tags/{reference}:refs/tags/{reference}"),
            )
        };
        let mut attempts: Vec<(String, Vec<String>, i32)> = Vec::new();
        if let Some(sha) = sha {
            if !local {
                attempts.push((format!("commit {sha}, shallow"), vec![sha.to_owned()], 1));
            }
        }
        if !local {
            attempts.push((
                format!("ref {reference}, shallow"),
                vec![branch_spec.clone(), tag_spec.clone()],
                1,
            ));
        }
        attempts.push((
            format!("ref {reference}"),
            vec![branch_spec, tag_spec],
            FULL,
        ));
        attempts.push((
            "all branches and tags".into(),
            vec![
                "+refs/heads/*:refs/remotes/origin/*".into(),
                "+refs/tags/*:refs/tags/*".into(),
            ],
            FULL,
        ));

        let mut received = 0;
        let mut last_error = None;
        let mut tried = Vec::new();
        for (how, refspecs, depth) in attempts {
            tried.push(how.clone());
            match self.fetch_refspecs(&repo, url, &refspecs, depth, deadline) {
                Ok(bytes) => received += bytes,
                Err(err) if Instant::now() >= deadline => {
                    tracing::debug!(error = %err.message(), "fetch stopped at its deadline");
                    return Err(GitError::Timeout {
                        url: redact_url(url),
                        timeout: deadline.saturating_duration_since(started),
                    });
                }
                Err(err) => {
                    let refused_shallow = depth != FULL && is_shallow_refusal(&err);
                    let err = classify(url, err);
                    match err {
                        GitError::Unreachable { .. }
                        | GitError::Unauthorized { .. }
                        | GitError::Untrusted { .. }
                            if !refused_shallow =>
                        {
                            return Err(err)
                        }
                        _ => {
                            last_error = Some(err);
                            continue;
                        }
                    }
                }
            }
            let found = match sha {
                Some(sha) => Oid::from_str(sha)
                    .ok()
                    .filter(|oid| repo.find_commit(*oid).is_ok())
                    .map(|oid| oid.to_string()),
                None => resolve(&repo, reference),
            };
            if let Some(found) = found {
                return Ok(Fetched {
                    sha: found,
                    mirror: path,
                    cached: false,
                    how,
                    received_bytes: received,
                    took: started.elapsed(),
                });
            }
        }
        match sha {
            Some(sha) => Err(GitError::UnknownCommit {
                url: redact_url(url),
                sha: sha.to_owned(),
                fetched: tried.join("; "),
            }),
            None => Err(last_error.unwrap_or(GitError::UnknownRef {
                url: redact_url(url),
                reference: reference.to_owned(),
            })),
        }
    }

    /// Fetches `refspecs` from `url`; returns the bytes received. Gives up
    /// once `deadline` passes.
    fn fetch_refspecs(
        &self,
        repo: &Repository,
        url: &str,
        refspecs: &[String],
        depth: i32,
        deadline: Instant,
    ) -> Result<usize, git2::Error> {
        let mut remote = repo.remote_anonymous(url)?;
        // After `url.<base>.insteadOf`: where libgit2 really connects.
        let port = ssh_port(remote.url().unwrap_or(url));
        let mut received = 0;
        // Why a callback refused: libgit2 replaces some of the callbacks'
        // messages with its own ("invalid or unknown remote ssh hostkey").
        let refused: RefCell<Option<git2::Error>> = RefCell::new(None);
        let refuse = |err: git2::Error| {
            *refused.borrow_mut() = Some(git2::Error::new(err.code(), err.class(), err.message()));
            err
        };
        let result = {
            let mut callbacks = RemoteCallbacks::new();
            let mut offered = Offered::default();
            callbacks.credentials(|asking, username, allowed| {
                credential(
                    &self.credentials,
                    url,
                    asking,
                    username,
                    allowed,
                    &mut offered,
                )
                .map_err(refuse)
            });
            callbacks.certificate_check(|cert, host| {
                check_host(self.credentials.known_hosts.as_deref(), port, cert, host)
                    .map_err(refuse)
            });
            // Returning false stops libgit2 at the deadline while data flows;
            // the server timeouts stop it when none does.
            callbacks.transfer_progress(|progress| {
                received = progress.received_bytes();
                Instant::now() < deadline
            });
            callbacks.sideband_progress(|_| Instant::now() < deadline);
            let mut options = FetchOptions::new();
            options.remote_callbacks(callbacks);
            options.download_tags(git2::AutotagOption::None);
            options.depth(if depth == FULL && repo.is_shallow() {
                UNSHALLOW
            } else {
                depth
            });
            remote.fetch(refspecs, Some(&mut options), None)
        };
        match (result, refused.into_inner()) {
            (Ok(()), _) => Ok(received),
            (Err(_), Some(ours)) => Err(ours),
            (Err(err), None) => Err(err),
        }
    }
}

/// A commit as a mirror has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    /// Its parents; `None` when the mirror is shallow there and so does not
    /// know them (which is not the same as a root commit's none).
    pub parents: Option<Vec<String>>,
    /// The first line of its message.
    pub subject: String,
    /// The committer's time, in seconds since the epoch.
    pub committed_at: i64,
}

/// The commits of `repo` reachable from `sha` and from none of `known`,
/// newest first (by committer time), at most `cap`. A walk of its own
/// rather than libgit2's revwalk, which fails on a parent a shallow mirror
/// lacks: such a commit is an edge, reported with its parents not known. As
/// git does, the walk goes by time and stops once only commits reachable
/// from `known` are left, so neither a cap nor the known history behind
/// makes it read the whole repository; a clock skewed far enough may make
/// it report a known commit again, which the API takes as a repeat.
fn commits_since(
    repo: &Repository,
    sha: &str,
    known: &[String],
    cap: usize,
) -> Result<Vec<Commit>, git2::Error> {
    let shallow = shallow_commits(repo);
    let mut walk = TimeWalk::default();
    walk.enqueue(repo.find_commit(Oid::from_str(sha)?)?, false);
    for known in known {
        if let Some(commit) = Oid::from_str(known)
            .ok()
            .and_then(|oid| repo.find_commit(oid).ok())
        {
            walk.enqueue(commit, true);
        }
    }
    let mut commits = Vec::new();
    while commits.len() < cap {
        let Some((commit, hidden)) = walk.next(repo)? else {
            break;
        };
        let mut complete = !shallow.contains(&commit.id());
        for parent in commit.parent_ids() {
            match repo.find_commit(parent) {
                Ok(parent) => walk.enqueue(parent, hidden),
                Err(err) if err.code() == ErrorCode::NotFound => complete = false,
                Err(err) => return Err(err),
            }
        }
        if !hidden {
            commits.push(Commit {
                sha: commit.id().to_string(),
                parents: complete.then(|| commit.parent_ids().map(|p| p.to_string()).collect()),
                subject: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default())
                    .into_owned(),
                committed_at: commit.time().seconds(),
            });
        }
    }
    Ok(commits)
}

/// Commits in the order of their time, newest first, each once, marked
/// hidden when reachable from a hidden one that was walked before it.
#[derive(Default)]
struct TimeWalk {
    queue: std::collections::BinaryHeap<(i64, Oid)>,
    /// Every commit queued so far, and whether it is hidden.
    hidden: HashMap<Oid, bool>,
    /// Queued commits not hidden: the walk ends when there are none.
    shown: usize,
    queued: std::collections::HashSet<Oid>,
}

impl TimeWalk {
    fn enqueue(&mut self, commit: git2::Commit<'_>, hidden: bool) {
        let oid = commit.id();
        match self.hidden.get_mut(&oid) {
            None => {
                self.hidden.insert(oid, hidden);
                self.queue.push((commit.time().seconds(), oid));
                self.queued.insert(oid);
                if !hidden {
                    self.shown += 1;
                }
            }
            Some(was) => {
                if hidden && !*was {
                    *was = true;
                    if self.queued.contains(&oid) {
                        self.shown -= 1;
                    }
                }
            }
        }
    }

    /// The newest queued commit and whether it is hidden; `None` once only
    /// hidden ones are left.
    fn next<'r>(
        &mut self,
        repo: &'r Repository,
    ) -> Result<Option<(git2::Commit<'r>, bool)>, git2::Error> {
        if self.shown == 0 {
            return Ok(None);
        }
        let Some((_, oid)) = self.queue.pop() else {
            return Ok(None);
        };
        self.queued.remove(&oid);
        let hidden = self.hidden[&oid];
        if !hidden {
            self.shown -= 1;
        }
        Ok(Some((repo.find_commit(oid)?, hidden)))
    }
}

/// The commits at the edge of a shallow mirror: git's `shallow` file, one
/// sha a line; none when the mirror is complete.
fn shallow_commits(repo: &Repository) -> std::collections::HashSet<Oid> {
    std::fs::read_to_string(repo.path().join("shallow"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| Oid::from_str(line.trim()).ok())
        .collect()
}

/// The lock of one mirror, shared by every fetch into it in this process.
fn mirror_lock(path: &Path) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    locks.entry(path.to_owned()).or_default().clone()
}

fn other(err: git2::Error) -> GitError {
    GitError::Other(err.message().to_owned())
}

/// Sorts a failed fetch into what the deployment's message should say.
fn classify(url: &str, err: git2::Error) -> GitError {
    let message = err.message().to_owned();
    let url = redact_url(url);
    let url = url.as_str();
    let lower = message.to_lowercase();
    // The host key checks' own refusals say what to do; libgit2's TLS
    // ones ("the SSL certificate is invalid") do not.
    let tls_refused = err.class() == ErrorClass::Ssl && lower.contains("certificate");
    if err.code() == ErrorCode::Certificate || tls_refused {
        let message = if !tls_refused {
            message
        } else if lower.contains("hostname") {
            format!("{message}: the server's TLS certificate is not made out to its host name")
        } else {
            format!(
                "{message}: the server's TLS certificate is not signed by a CA the runner \
                 trusts; if it is signed by a CA of your own, give that CA to the runner with \
                 --git-ca-file"
            )
        };
        return GitError::Untrusted {
            url: url.to_owned(),
            message,
        };
    }
    let unreachable = matches!(err.class(), git2::ErrorClass::Net | git2::ErrorClass::Os)
        || lower.contains("failed to connect")
        || lower.contains("could not resolve")
        || lower.contains("connection refused")
        || lower.contains("does not appear to be a git repository")
        || lower.contains("could not find repository")
        || lower.contains("failed to resolve path")
        || lower.contains("not found");
    if err.code() == git2::ErrorCode::Auth
        || lower.contains("authentication")
        || lower.contains("credentials")
        || err.class() == git2::ErrorClass::Ssh && lower.contains("key")
    {
        GitError::Unauthorized {
            url: url.to_owned(),
            message,
        }
    } else if unreachable && !lower.contains("want") && !lower.contains("specific object") {
        GitError::Unreachable {
            url: url.to_owned(),
            message,
        }
    } else {
        GitError::Other(message)
    }
}

fn is_local(url: &str) -> bool {
    url.starts_with("file://") || url.starts_with('/') || url.starts_with("./")
}

/// The commit a ref names in the mirror after fetching it.
fn resolve(repo: &Repository, reference: &str) -> Option<String> {
    for name in [
        format!("refs/remotes/origin/{reference}"),
        format!("refs/tags/{reference}"),
        reference.to_owned(),
    ] {
        if let Ok(object) = repo.revparse_single(&name) {
            if let Ok(commit) = object.peel_to_commit() {
                return Some(commit.id().to_string());
            }
        }
    }
    None
}

/// What the credentials callback gave libgit2 during one fetch: asked for
/// the same again, the server refused it.
#[derive(Default)]
struct Offered {
    username: bool,
    ssh_key: bool,
    token: bool,
}

/// The credentials for a request to `url` while fetching `repository`. The
/// SSH key goes only to a server whose host key checked out (libgit2 asks
/// after [`check_host`]); the HTTPS token only over `https://`, and only to
/// the repository's own host: never in clear text, never to a host a
/// redirect names, never as an SSH password.
fn credential(
    credentials: &Credentials,
    repository: &str,
    url: &str,
    username: Option<&str>,
    allowed: git2::CredentialType,
    offered: &mut Offered,
) -> Result<Cred, git2::Error> {
    let refused =
        |message: String| git2::Error::new(ErrorCode::Auth, ErrorClass::Callback, message);
    let user = username.unwrap_or("git");
    let shown = redact_url(url);
    if allowed.contains(git2::CredentialType::SSH_KEY) {
        let Some(key) = &credentials.ssh_key else {
            return Err(refused(format!(
                "{shown} asks for an SSH key: give the runner one with --git-ssh-key-file"
            )));
        };
        if std::mem::replace(&mut offered.ssh_key, true) {
            return Err(refused(format!(
                "the SSH server refused the key {} for user {user}: add its public key to \
                 that user's authorized keys on the server, or give the runner the right \
                 --git-ssh-key-file",
                key.display()
            )));
        }
        return Cred::ssh_key(user, None, key, None);
    }
    if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
        let Some(token) = &credentials.token else {
            return Err(refused(format!(
                "{shown} asks for a user name and password: give the runner a token with \
                 --git-token"
            )));
        };
        if !token_may_go_to(repository, url) {
            return Err(refused(format!(
                "{shown} asks for credentials; the --git-token is sent only over https:// to \
                 the repository's host ({})",
                host_of(repository).unwrap_or("none")
            )));
        }
        if std::mem::replace(&mut offered.token, true) {
            return Err(refused(format!(
                "{} refused the --git-token (sent as the password of x-access-token): check \
                 that the token is valid and may read the repository",
                host_of(url).unwrap_or("the server")
            )));
        }
        return Cred::userpass_plaintext("x-access-token", token.expose());
    }
    if allowed.contains(git2::CredentialType::USERNAME) && !offered.username {
        offered.username = true;
        return Cred::username(user);
    }
    Err(refused(format!(
        "{shown} asks for credentials the runner cannot give ({allowed:?}): give \
         --git-ssh-key-file for SSH repositories, --git-token for HTTPS ones"
    )))
}

/// SSH host keys must be in the known_hosts file (`port` is the server's:
/// libgit2 gives the host alone); TLS is checked by libgit2.
fn check_host(
    known_hosts: Option<&Path>,
    port: u16,
    cert: &git2::cert::Cert<'_>,
    host: &str,
) -> Result<CertificateCheckStatus, git2::Error> {
    use known_hosts::{HostKey, Verdict};

    let Some(hostkey) = cert.as_hostkey() else {
        return Ok(CertificateCheckStatus::CertificatePassthrough);
    };
    let name = known_hosts::host_name(host, port);
    let refuse = |message: String| {
        Err(git2::Error::new(
            ErrorCode::Certificate,
            ErrorClass::Ssh,
            message,
        ))
    };
    let Some(blob) = hostkey.hostkey() else {
        return refuse(format!("the SSH server {name} sent no host key"));
    };
    let key = HostKey {
        blob,
        kind: hostkey.hostkey_type().map_or("unknown", |kind| kind.name()),
    };
    let (kind, fingerprint) = (key.kind(), key.fingerprint());
    let path = known_hosts.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".ssh/known_hosts"))
    });
    let Some(path) = path else {
        return refuse(format!(
            "cannot check the SSH host key of {name} ({kind} {fingerprint}): there is no \
             known_hosts file; give the runner one with --known-hosts-file"
        ));
    };
    let file = path.display();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) => {
            return refuse(format!(
                "cannot check the SSH host key of {name} ({kind} {fingerprint}): {file} cannot \
                 be read ({err}); give --known-hosts-file a file that holds the server's key"
            ))
        }
    };
    let scan = format!(
        "ssh-keyscan -t {}{} {host} >> {file}",
        keyscan_type(kind),
        if port == 22 {
            String::new()
        } else {
            format!(" -p {port}")
        }
    );
    match known_hosts::check(&text, &name, &key) {
        Verdict::Known => Ok(CertificateCheckStatus::CertificateOk),
        Verdict::Unknown => refuse(format!(
            "the SSH host key of {name} ({kind} {fingerprint}) is not in {file}: if that \
             fingerprint is the server's (ask its administrator), add the key to {file}, e.g. \
             with `{scan}`"
        )),
        Verdict::OtherTypes { kinds } => refuse(format!(
            "the SSH host key of {name} ({kind} {fingerprint}) is not in {file}, which holds \
             only {} keys for it: if that fingerprint is the server's (ask its \
             administrator), add its {kind} key to {file}, e.g. with `{scan}`",
            kinds.join(", ")
        )),
        Verdict::Changed { line } => refuse(format!(
            "the SSH host key of {name} has changed: the server offered {kind} {fingerprint}, \
             but line {line} of {file} holds another {kind} key for it. Someone may be \
             intercepting the connection, so nothing was sent; if the server's administrator \
             confirms the new key, replace the old one (`ssh-keygen -R '{name}' -f {file}`, \
             then `{scan}`)"
        )),
        Verdict::Revoked { line } => refuse(format!(
            "the SSH host key of {name} ({kind} {fingerprint}) is revoked (line {line} of \
             {file}); the server must use another key"
        )),
    }
}

/// `ssh-keyscan -t`'s name of a key type.
fn keyscan_type(kind: &str) -> &str {
    match kind {
        "ssh-ed25519" => "ed25519",
        "ssh-rsa" => "rsa",
        "ssh-dss" => "dsa",
        kind if kind.starts_with("ecdsa-") => "ecdsa",
        kind => kind,
    }
}

/// The port of an SSH URL (`ssh://[user@]host[:port]/path`); 22 for
/// scp-like ones (`user@host:path`) and when none is given.
fn ssh_port(url: &str) -> u16 {
    let Some((_, rest)) = url.split_once("://") else {
        return 22;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let port = match host.strip_prefix('[') {
        Some(bracketed) => bracketed
            .split_once(']')
            .and_then(|(_, rest)| rest.strip_prefix(':')),
        None => host.rsplit_once(':').map(|(_, port)| port),
    };
    port.and_then(|port| port.parse().ok()).unwrap_or(22)
}

/// Whether the HTTPS token may be sent to `url` while fetching `repository`.
fn token_may_go_to(repository: &str, url: &str) -> bool {
    url.starts_with("https://")
        && repository.starts_with("https://")
        && host_of(url).is_some()
        && host_of(url) == host_of(repository)
}

/// The host (with port) of a URL, without user info.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    (!host.is_empty()).then_some(host)
}

/// `url` with any password in it replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Whether libgit2 refused a shallow fetch (the local transport does; a
/// server without shallow support does), which a full fetch gets around.
fn is_shallow_refusal(err: &git2::Error) -> bool {
    let message = err.message().to_lowercase();
    message.contains("shallow")
}

/// Sets libgit2's process-wide options once: the server connect and read
/// timeouts, and the CA file HTTPS servers may be signed by (added to the
/// system's CAs).
///
/// libgit2 keeps them in C globals without synchronisation, which is why
/// git2 marks the setters `unsafe`: the first fetch sets them under a
/// `OnceLock`, before any git operation of this process can run, and they
/// are never written again. A later fetch that names another CA file fails:
/// the process trusts the first one only.
#[allow(unsafe_code)]
fn set_process_options(stall: Duration, ca_file: Option<&Path>) -> Result<(), GitError> {
    static SET: OnceLock<Result<Option<PathBuf>, String>> = OnceLock::new();
    let set = SET.get_or_init(|| {
        let millis = i32::try_from(stall.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: runs once, before this process's first git operation
        // (every fetch comes through here and waits for the `OnceLock`), so
        // nothing reads the globals while they are written.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(millis);
            let _ = git2::opts::set_server_timeout_in_milliseconds(millis);
        }
        let Some(file) = ca_file else {
            return Ok(None);
        };
        // SAFETY: as above.
        match unsafe { git2::opts::set_ssl_cert_file(file) } {
            Ok(()) => Ok(Some(file.to_owned())),
            Err(err) => Err(format!(
                "the --git-ca-file {} cannot be loaded: {}",
                file.display(),
                err.message()
            )),
        }
    });
    match (set, ca_file) {
        (Err(message), _) => Err(GitError::Other(message.clone())),
        (Ok(trusted), Some(wanted)) if trusted.as_deref() != Some(wanted) => {
            Err(GitError::Other(format!(
                "the --git-ca-file {} cannot be trusted in this process: libgit2 holds one set \
                 of CAs per process, and it was set up {}",
                wanted.display(),
                match trusted {
                    Some(file) => format!("with {}", file.display()),
                    None => "without one".into(),
                }
            )))
        }
        (Ok(_), _) => Ok(()),
    }
}

/// The files of one commit, read from a mirror's object database.
pub struct CommitFiles {
    repo: Repository,
    tree: Oid,
}

impl CommitFiles {
    pub fn open(mirror: &Path, sha: &str) -> Result<Self, GitError> {
        let repo = Repository::open_bare(mirror).map_err(other)?;
        let oid = Oid::from_str(sha).map_err(other)?;
        let tree = repo.find_commit(oid).map_err(other)?.tree_id();
        Ok(Self { repo, tree })
    }
}

impl Files for CommitFiles {
    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        let io = |err: git2::Error| std::io::Error::other(err.message().to_owned());
        let tree = self.repo.find_tree(self.tree).map_err(io)?;
        let clean = path.trim_start_matches("./");
        let entry = match tree.get_path(Path::new(clean)) {
            Ok(entry) => entry,
            Err(err) if err.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(err) => return Err(io(err)),
        };
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return Ok(None);
        }
        // The size from the object's header, before its content is read.
        let (size, _) = self
            .repo
            .odb()
            .and_then(|odb| odb.read_header(entry.id()))
            .map_err(io)?;
        if size as u64 > crate::spec::MAX_FILE_BYTES {
            return Err(crate::spec::too_large(clean, size as u64));
        }
        let blob = self.repo.find_blob(entry.id()).map_err(io)?;
        Ok(Some(blob.content().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_only_over_https_to_the_repository_s_host() {
        let repo = "https://github.com/acme/shop.git";
        assert!(token_may_go_to(
            repo,
            "https://github.com/acme/shop.git/info/refs"
        ));
        assert!(!token_may_go_to(repo, "http://github.com/acme/shop.git"));
        assert!(!token_may_go_to(repo, "https://evil.example/acme/shop.git"));
        assert!(!token_may_go_to(repo, "https://github.com.evil.example/x"));
        assert!(!token_may_go_to(
            "http://github.com/acme/shop.git",
            "http://github.com/acme/shop.git"
        ));
        assert_eq!(
            host_of("https://u:p@git.example:8443/x"),
            Some("git.example:8443")
        );
        assert_eq!(host_of("file:///srv/x"), None);
    }

    /// A commit of `parents` with an empty tree, at `time`.
    fn commit(repo: &Repository, subject: &str, time: i64, parents: &[Oid]) -> Oid {
        let tree = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let who = git2::Signature::new("t", "t@example.com", &git2::Time::new(time, 0)).unwrap();
        let parents: Vec<git2::Commit<'_>> = parents
            .iter()
            .map(|p| repo.find_commit(*p).unwrap())
            .collect();
        let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
        repo.commit(
            None,
            &who,
            &who,
            &format!("{subject}\n\nbody"),
            &tree,
            &parents,
        )
        .unwrap()
    }

    #[test]
    fn the_commits_since_the_known_ones_newest_first_capped() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        //   a - b - c ---- m
        //        \        /
        //         e ---- f
        let a = commit(&repo, "a", 1, &[]);
        let b = commit(&repo, "b", 2, &[a]);
        let c = commit(&repo, "c", 3, &[b]);
        let e = commit(&repo, "e", 4, &[b]);
        let f = commit(&repo, "f", 5, &[e]);
        let m = commit(&repo, "m", 6, &[c, f]);
        let subjects = |known: &[Oid], cap| -> Vec<String> {
            let known: Vec<String> = known.iter().map(Oid::to_string).collect();
            commits_since(&repo, &m.to_string(), &known, cap)
                .unwrap()
                .into_iter()
                .map(|c| c.subject)
                .collect()
        };
        assert_eq!(subjects(&[], 100), ["m", "f", "e", "c", "b", "a"]);
        assert_eq!(subjects(&[c], 100), ["m", "f", "e"]);
        assert_eq!(subjects(&[c, f], 100), ["m"]);
        assert_eq!(subjects(&[], 2), ["m", "f"]);
        // A sha the mirror lacks hides nothing.
        assert_eq!(
            subjects(&["ab".repeat(20).parse().unwrap()], 3),
            ["m", "f", "e"]
        );

        let all = commits_since(&repo, &m.to_string(), &[], 100).unwrap();
        assert_eq!(all[0].sha, m.to_string());
        assert_eq!(
            all[0].parents,
            Some(vec![c.to_string(), f.to_string()]),
            "both parents, in order"
        );
        assert_eq!(all[0].committed_at, 6);
        assert_eq!(all[5].parents, Some(vec![]), "a root commit");
    }

    #[test]
    fn a_shallow_mirror_does_not_know_the_parents_at_its_edge() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let a = commit(&repo, "a", 1, &[]);
        let b = commit(&repo, "b", 2, &[a]);
        let c = commit(&repo, "c", 3, &[b]);
        std::fs::write(dir.path().join("shallow"), format!("{b}\n")).unwrap();
        let repo = Repository::open_bare(dir.path()).unwrap();
        let walked = commits_since(&repo, &c.to_string(), &[], 100).unwrap();
        let edge = walked.iter().find(|w| w.sha == b.to_string()).unwrap();
        assert_eq!(edge.parents, None, "{walked:?}");
        assert_eq!(walked[0].parents, Some(vec![b.to_string()]));
    }

    #[test]
    fn the_port_of_an_ssh_url_is_the_one_it_names_or_22() {
        assert_eq!(ssh_port("ssh://git@127.0.0.1:2222/srv/shop.git"), 2222);
        assert_eq!(ssh_port("ssh://[::1]:2200/shop.git"), 2200);
        assert_eq!(ssh_port("ssh://git@github.com/acme/shop.git"), 22);
        assert_eq!(ssh_port("ssh://[::1]/shop.git"), 22);
        assert_eq!(ssh_port("git@github.com:acme/shop.git"), 22);
    }
}

//! Real git repositories in temp dirs, and real servers serving them on
//! 127.0.0.1.
//!
//! - [`Repo`]: a working repository to commit to, reachable as `file://`.
//! - [`GitDaemon`]: `git daemon` exporting every repository under a directory.
//! - [`GitServer`]: a bare `acme/shop.git` served by a daemon with
//!   `uploadpack.allowReachableSHA1InWant`, as GitHub allows fetching by sha,
//!   and a working copy whose commits are pushed to it.
//! - [`ssh::SshServer`]: an `sshd` of its own serving a bare copy of a
//!   [`Repo`], with its own host key and one authorized client key.
//! - [`http::GitHttp`]: git's smart HTTP (`git http-backend`) over HTTPS and
//!   plain HTTP, requiring a token, recording what each request carried.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Process;
use crate::{free_port, wait};

pub mod http;
pub mod ssh;

/// Runs `git args` in `dir`; returns its trimmed stdout, panicking with its
/// stderr when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Where a [`Repo`] is in its temp dir.
const REPO_DIR: &str = "shop";

/// A working repository on branch `main`, in a temp dir of its own (at
/// `<temp dir>/shop`, so that a [`GitDaemon`] can serve that dir).
pub struct Repo {
    path: PathBuf,
    dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(REPO_DIR);
        std::fs::create_dir(&path).expect("repository dir");
        let repo = Repo { path, dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.email", "test@slipway.invalid"]);
        repo.git(&["config", "user.name", "Slipway Tests"]);
        repo
    }

    /// `file://` URL of the repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding the repository, as [`Repo::name`].
    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    /// The repository's directory name in [`Repo::base`].
    pub fn name(&self) -> &str {
        REPO_DIR
    }

    /// Runs `git args` in the repository; returns its stdout.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.path, args)
    }

    /// Writes `files` (paths relative to the repository's root).
    pub fn write(&self, files: &[(&str, &str)]) {
        write(&self.path, files);
    }

    /// Writes `files` and commits everything; returns the commit's sha.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        self.write(files);
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.head()
    }

    /// The sha `HEAD` is at.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }
}

impl Default for Repo {
    fn default() -> Self {
        Repo::new()
    }
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in a directory"))
            .expect("create directories");
        std::fs::write(path, content).expect("write a file");
    }
}

/// A bare copy of `repo` (its commits so far) at `dir/shop.git`, allowing
/// fetches by sha as GitHub does; returns its path.
fn bare_copy(repo: &Repo, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("a dir for the bare copy");
    let bare = dir.join(format!("{}.git", repo.name()));
    let source = repo.path().to_str().expect("a UTF-8 temp path");
    let target = bare.to_str().expect("a UTF-8 temp path");
    git(dir, &["clone", "-q", "--bare", source, target]);
    git(
        &bare,
        &["config", "uploadpack.allowReachableSHA1InWant", "true"],
    );
    bare
}

/// `git daemon` exporting every repository under a directory, on a free port
/// of 127.0.0.1 (or another address of this machine); killed when dropped.
pub struct GitDaemon {
    pub ip: IpAddr,
    pub port: u16,
    _daemon: Process,
    _log: tempfile::TempDir,
}

impl GitDaemon {
    /// Serves the repositories under `base`; returns once it answers.
    pub async fn serve(base: &Path) -> GitDaemon {
        GitDaemon::serve_on(base, Ipv4Addr::LOCALHOST.into()).await
    }

    /// Serves the repositories under `base` on `ip`, e.g. the address the
    /// swarm's containers reach this machine at.
    pub async fn serve_on(base: &Path, ip: IpAddr) -> GitDaemon {
        let port = free_port();
        // `git-daemon` itself: `git daemon` would run it as a child of its
        // own, which killing `git` leaves behind.
        let exec_path = git(base, &["--exec-path"]);
        let mut command = Command::new(Path::new(&exec_path).join("git-daemon"));
        command
            .args([
                "--reuseaddr",
                "--export-all",
                &format!("--listen={ip}"),
                &format!("--port={port}"),
            ])
            .arg(format!("--base-path={}", base.display()))
            .arg(base);
        let log = tempfile::tempdir().expect("temp dir");
        let daemon = Process::spawn("git-daemon", command, &log.path().join("git-daemon.log"));
        let daemon = GitDaemon {
            ip,
            port,
            _daemon: daemon,
            _log: log,
        };
        // Serving once it answers a connection.
        wait::until("git daemon to listen", Duration::from_secs(10), || async {
            std::net::TcpStream::connect((ip, port)).map(|_| ())
        })
        .await;
        daemon
    }

    /// `git://` URL of the repository at `path` under the served directory.
    pub fn url(&self, path: &str) -> String {
        format!("git://{}/{path}", SocketAddr::new(self.ip, self.port))
    }
}

/// A bare `acme/shop.git` that `git daemon` serves with
/// `uploadpack.allowReachableSHA1InWant`, and a working copy whose commits
/// are pushed to it.
pub struct GitServer {
    /// `git://IP:PORT/acme/shop.git`.
    pub url: String,
    bare: PathBuf,
    work: PathBuf,
    _daemon: GitDaemon,
}

impl GitServer {
    /// Creates `acme/shop.git` (and a working copy) under `dir` and serves it.
    pub async fn start(dir: &Path) -> GitServer {
        GitServer::start_on(dir, Ipv4Addr::LOCALHOST.into()).await
    }

    /// [`GitServer::start`], served on `ip`.
    pub async fn start_on(dir: &Path, ip: IpAddr) -> GitServer {
        let base = dir.join("git");
        let bare = base.join("acme/shop.git");
        let work = dir.join("work");
        std::fs::create_dir_all(&bare).expect("bare repository dir");
        std::fs::create_dir_all(&work).expect("working copy dir");
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        git(
            &bare,
            &["config", "uploadpack.allowReachableSHA1InWant", "true"],
        );
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["config", "user.email", "test@slipway.invalid"]);
        git(&work, &["config", "user.name", "Slipway Tests"]);
        let origin = bare.to_str().expect("a UTF-8 temp path");
        git(&work, &["remote", "add", "origin", origin]);
        let daemon = GitDaemon::serve_on(&base, ip).await;
        GitServer {
            url: daemon.url("acme/shop.git"),
            bare,
            work,
            _daemon: daemon,
        }
    }

    /// The served bare repository.
    pub fn bare(&self) -> &Path {
        &self.bare
    }

    /// Writes `files`, commits them on `branch` and pushes; returns the sha.
    pub fn commit(&self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        write(&self.work, files);
        git(&self.work, &["checkout", "-q", "-B", branch]);
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "-q", "-f", "origin", branch]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

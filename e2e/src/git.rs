//! A real git repository served over `git://127.0.0.1`: commits are made in a
//! working copy and pushed to a bare repository that `git daemon` serves with
//! `uploadpack.allowReachableSHA1InWant`, as GitHub allows fetching by sha.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Process;
use crate::wait;

pub struct GitServer {
    /// `git://127.0.0.1:PORT/acme/shop.git`.
    pub url: String,
    work: PathBuf,
    _daemon: Process,
}

fn git(dir: &Path, args: &[&str]) -> String {
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

impl GitServer {
    /// Creates `acme/shop.git` under `dir` and serves it.
    pub async fn start(dir: &Path) -> GitServer {
        let base = dir.join("git");
        let bare = base.join("acme/shop.git");
        let work = dir.join("work");
        std::fs::create_dir_all(&bare).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        git(
            &bare,
            &["config", "uploadpack.allowReachableSHA1InWant", "true"],
        );
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["config", "user.email", "e2e@slipway.invalid"]);
        git(&work, &["config", "user.name", "Slipway e2e"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);

        let port = free_port();
        // `git-daemon` itself: `git daemon` would run it as a child of its
        // own, which killing `git` leaves behind.
        let exec_path = git(&work, &["--exec-path"]);
        let mut command = Command::new(Path::new(&exec_path).join("git-daemon"));
        command.args([
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", base.display()),
        ]);
        command.arg(&base);
        let daemon = Process::spawn("git-daemon", command, &dir.join("git-daemon.log"));
        let url = format!("git://127.0.0.1:{port}/acme/shop.git");
        let server = GitServer {
            url,
            work,
            _daemon: daemon,
        };
        // Serving once it answers a connection.
        wait::until("git daemon to listen", Duration::from_secs(10), || async {
            std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ())
        })
        .await;
        server
    }

    /// Writes `files`, commits them on `branch` and pushes; returns the sha.
    pub fn commit(&self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let path = self.work.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
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

/// A port nobody listens on now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

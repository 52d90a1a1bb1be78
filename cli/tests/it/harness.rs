//! Starting `slipway up` as a process, running the `slipway` commands, and
//! the example's repository. The swarm helpers are the test kit's.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use slipway_testkit::git::Repo;

/// The binary under test.
pub const SLIPWAY: &str = env!("CARGO_BIN_EXE_slipway");

/// A `slipway` command with none of the caller's `SLIPWAY_*` settings.
pub fn command() -> Command {
    let mut command = Command::new(SLIPWAY);
    for (key, _) in std::env::vars() {
        if key.starts_with("SLIPWAY_") {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn from(output: std::process::Output) -> Self {
        Out {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with everything printed unless the command succeeded.
    pub fn ok(self) -> Self {
        assert!(self.status.success(), "slipway failed: {self:#?}");
        self
    }

    /// Panics unless the command failed.
    pub fn failed(self) -> Self {
        assert!(
            !self.status.success(),
            "slipway should have failed: {self:#?}"
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {self:#?}"))
    }
}

/// `slipway up` running as a child process on its own data directory and
/// ports; stopped with SIGTERM when dropped.
pub struct Up {
    child: Option<Child>,
    pub data_dir: tempfile::TempDir,
    pub api_url: String,
    pub token: String,
    /// Everything `up` printed to stdout before it was ready.
    pub banner: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Up {
    /// Starts `up` with `args` on a fresh data directory, on free ports.
    pub fn start(args: &[&str]) -> Up {
        Self::start_in(tempfile::tempdir().unwrap(), args)
    }

    /// Starts `up` on `data_dir` (which may hold an earlier start's state).
    pub fn start_in(data_dir: tempfile::TempDir, args: &[&str]) -> Up {
        let mut child = command()
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--listen", "127.0.0.1:0", "--hooks-listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("slipway up starts");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut up = Up {
            child: Some(child),
            data_dir,
            api_url: String::new(),
            token: String::new(),
            banner: String::new(),
            stderr: Some(stderr),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while up.token.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("export SLIPWAY_API_URL=") {
                        up.api_url = url.to_owned();
                    }
                    if let Some(token) = line.strip_prefix("export SLIPWAY_TOKEN=") {
                        up.token = token.to_owned();
                    }
                    up.banner.push_str(&line);
                    up.banner.push('\n');
                }
                Err(_) => {
                    let (status, stderr) = up.stop();
                    panic!(
                        "slipway up did not get ready ({status:?}).\n\
                         These tests need a Docker engine in swarm mode with the test images \
                         (scripts/test.sh starts one).\nstdout:\n{}\nstderr:\n{stderr}",
                        up.banner
                    );
                }
            }
        }
        up
    }

    /// A `slipway` command talking to this `up` with its admin token.
    pub fn command(&self) -> Command {
        let mut command = command();
        command
            .env("SLIPWAY_API_URL", &self.api_url)
            .env("SLIPWAY_TOKEN", &self.token);
        command
    }

    /// Runs `slipway args...` against this `up`.
    pub fn run(&self, args: &[&str]) -> Out {
        Out::from(self.command().args(args).output().expect("slipway runs"))
    }

    /// Stops `up` with SIGTERM; returns its exit status and what it logged.
    pub fn stop(&mut self) -> (Option<ExitStatus>, String) {
        let Some(mut child) = self.child.take() else {
            return (None, String::new());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A unique application name; the example's stack is named after it.
pub fn unique_name(test: &str) -> String {
    let n = chrono::Utc::now().timestamp_micros() % 100_000_000;
    format!("{test}-{n}")
}

/// A git repository holding the example under `examples/shop/`, as a clone
/// of Slipway's own repository has it.
pub struct ExampleRepo {
    repo: Repo,
}

impl ExampleRepo {
    pub fn new() -> Self {
        let repo = Repo::new();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/shop");
        let target = repo.path().join("examples/shop");
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(&source).expect("examples/shop exists") {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
        repo.commit(&[], "the example");
        ExampleRepo { repo }
    }

    pub fn path(&self) -> PathBuf {
        self.repo.path().to_owned()
    }

    pub fn head(&self) -> String {
        self.repo.head()
    }
}

/// GET `http://127.0.0.1:port/` with a plain socket; the body, or why not.
pub fn http_get(port: u16) -> Result<String, String> {
    use std::io::Write as _;
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

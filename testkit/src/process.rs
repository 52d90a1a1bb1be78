//! A child process owned by a test: its stdout and stderr go to a file, it is
//! killed (SIGKILL) and reaped when dropped, and when a test fails its output
//! is printed so the failure can be understood. When the test process itself
//! is killed (a timeout), `setpriv --pdeathsig KILL` (util-linux) takes its
//! children with it, so no runner is left behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Process {
    /// For messages: `api`, `runner`, ...
    pub name: String,
    child: Option<Child>,
    /// Where stdout and stderr go, appended across restarts.
    log: PathBuf,
}

impl Process {
    /// Starts `command` with its output appended to `log`.
    pub fn spawn(name: &str, command: Command, log: &Path) -> Process {
        let mut command = die_with_parent(command);
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|err| panic!("cannot open {}: {err}", log.display()));
        let err = file.try_clone().expect("a second handle on the log");
        command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .env("NO_COLOR", "1");
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name} ({command:?}): {err}"));
        Process {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        }
    }

    /// Everything the process (and its earlier incarnations) wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it exited; with its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its resident memory now, in KiB (`VmRSS`), while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `command` under `setpriv --pdeathsig KILL`, which execs it (same pid) after
/// asking the kernel to kill it when the thread that started it ends; as is
/// when `setpriv` is missing.
fn die_with_parent(command: Command) -> Command {
    const SETPRIV: &str = "/usr/bin/setpriv";
    if !Path::new(SETPRIV).exists() {
        return command;
    }
    let mut wrapped = Command::new(SETPRIV);
    wrapped
        .args(["--pdeathsig", "KILL", "--"])
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let output = self.output();
            let tail: Vec<&str> = output.lines().rev().take(60).collect();
            eprintln!(
                "---- last lines of {} ({}) ----",
                self.name,
                self.log.display()
            );
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

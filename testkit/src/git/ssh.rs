//! Git over SSH: an `sshd` of its own on 127.0.0.1 serving a bare copy of a
//! [`Repo`], with a host key and an authorized client key made for it.
//!
//! Debian's `openssh-server` (`scripts/test-env.sh` installs it): `sshd -D
//! -e -f CONFIG -p PORT`, by its absolute path (it re-executes itself), as
//! the current user (root on the test machines, where sshd wants its
//! privilege separation directory `/run/sshd`). `StrictModes no`, since the
//! authorized keys live in a temp dir under the world-writable `/tmp`; the
//! user's shell runs `git-upload-pack` from its `PATH`.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{bare_copy, Repo};
use crate::process::Process;
use crate::{free_port, wait};

const SSHD: &str = "/usr/sbin/sshd";

/// An ed25519 key pair made by `ssh-keygen`, without a passphrase.
#[derive(Clone, Debug)]
pub struct SshKey {
    /// The private key file (its public half is next to it, `.pub`).
    pub private: PathBuf,
    /// `ssh-ed25519 AAAA...`: the type and the key, as `known_hosts` and
    /// `authorized_keys` lines hold them.
    pub public: String,
}

impl SshKey {
    /// Makes a key pair at `path` (and `path.pub`).
    pub fn generate(path: &Path) -> SshKey {
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
            .arg(path));
        let public = std::fs::read_to_string(path.with_extension("pub"))
            .expect("the public key ssh-keygen wrote");
        let public = public.split_whitespace().take(2).collect::<Vec<_>>();
        SshKey {
            private: path.to_owned(),
            public: public.join(" "),
        }
    }

    /// Its fingerprint as `ssh-keygen -l` prints it: `SHA256:...`.
    pub fn fingerprint(&self) -> String {
        let listed = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.private.with_extension("pub")));
        listed
            .split_whitespace()
            .nth(1)
            .expect("ssh-keygen -l prints the fingerprint second")
            .to_owned()
    }
}

/// `sshd` serving a bare copy of a repository on a free port of 127.0.0.1;
/// killed when dropped.
pub struct SshServer {
    pub port: u16,
    /// The user the server lets in: the current one.
    pub user: String,
    /// `ssh://USER@127.0.0.1:PORT/.../shop.git`.
    pub url: String,
    /// The server's host key.
    pub host_key: SshKey,
    /// The one key the server lets in.
    pub client_key: SshKey,
    bare: PathBuf,
    dir: tempfile::TempDir,
    sshd: Process,
}

impl SshServer {
    /// Serves a bare copy of `repo` (its commits so far); returns once sshd
    /// greets connections.
    pub async fn serve(repo: &Repo) -> SshServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let bare = bare_copy(repo, &dir.path().join("git"));
        let host_key = SshKey::generate(&dir.path().join("host_key"));
        let client_key = SshKey::generate(&dir.path().join("client_key"));
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, format!("{}\n", client_key.public))
            .expect("write authorized_keys");
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\n\
                 HostKey {host_key}\n\
                 AuthorizedKeysFile {authorized}\n\
                 StrictModes no\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 UsePAM no\n\
                 PidFile none\n\
                 PrintMotd no\n\
                 UseDNS no\n\
                 LogLevel VERBOSE\n",
                host_key = host_key.private.display(),
                authorized = authorized.display(),
            ),
        )
        .expect("write sshd_config");
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: scripts/test-env.sh installs openssh-server"
        );
        if !Path::new("/run/sshd").is_dir() {
            // Made at boot by systemd's tmpfiles, which the test machines lack.
            std::fs::create_dir_all("/run/sshd")
                .expect("sshd's privilege separation directory /run/sshd");
        }

        let port = free_port();
        let mut command = Command::new(SSHD);
        command
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .args(["-p", &port.to_string()]);
        let sshd = Process::spawn("sshd", command, &dir.path().join("sshd.log"));
        let user = run(Command::new("id").arg("-un"));
        let server = SshServer {
            port,
            url: format!("ssh://{user}@127.0.0.1:{port}{}", bare.display()),
            user,
            host_key,
            client_key,
            bare,
            dir,
            sshd,
        };
        wait::until("sshd to greet", Duration::from_secs(10), || async {
            greeting(port)
        })
        .await;
        server
    }

    /// The `known_hosts` line for this server: `[127.0.0.1]:PORT KEY`, the
    /// form OpenSSH writes for a port other than 22.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}\n", self.port, self.host_key.public)
    }

    /// The served bare repository.
    pub fn bare(&self) -> &Path {
        &self.bare
    }

    /// A directory for the test's own files, removed with the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What sshd logged so far (connections, keys accepted, sessions).
    pub fn log(&self) -> String {
        self.sshd.output()
    }
}

/// Reads sshd's greeting (`SSH-2.0-...`) from a fresh connection.
fn greeting(port: u16) -> Result<(), String> {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|err| err.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|err| err.to_string())?;
    let mut greeting = [0u8; 8];
    stream
        .read_exact(&mut greeting)
        .map_err(|err| err.to_string())?;
    if &greeting == b"SSH-2.0-" {
        Ok(())
    } else {
        Err(format!(
            "greeted with {:?}",
            String::from_utf8_lossy(&greeting)
        ))
    }
}

/// Runs `command`; returns its trimmed stdout, panicking with its stderr
/// when it fails.
fn run(command: &mut Command) -> String {
    let out = command.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

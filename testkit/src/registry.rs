//! The container registries `scripts/test-env.sh` runs on 127.0.0.1 — an
//! open one, and a private one with htpasswd auth over TLS whose CA the
//! engine trusts — and what tests do with them: push an image under a tag
//! (or move a tag to another image), forget an image locally so that a node
//! has to pull it, and write the Docker `config.json` a runner is given.
//!
//! Pushes use a Docker config of the kit's own (`DOCKER_CONFIG`), so the
//! machine's `~/.docker/config.json` is left alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The open registry: anyone may pull and push.
pub const OPEN: &str = "127.0.0.1:5000";
/// The private registry: TLS, and only [`USER`] with [`PASSWORD`].
pub const PRIVATE: &str = "127.0.0.1:5443";
/// The private registry's user.
pub const USER: &str = "slipway";
/// The private registry's password. Its credentials' standard base64 has
/// `+` and `/`, which the engine does not read: it tests that the runner
/// sends the URL-safe form.
pub const PASSWORD: &str = "t3st>>>pass???word";

/// Fails loudly when the registries of `scripts/test-env.sh` do not answer.
pub fn require_registries() {
    for registry in [OPEN, PRIVATE] {
        let answers = registry
            .parse()
            .ok()
            .and_then(|addr| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()
            })
            .is_some();
        assert!(
            answers,
            "these tests need the container registries of scripts/test-env.sh ({OPEN}, \
             {PRIVATE}); nothing answers on {registry}: run scripts/test-env.sh"
        );
    }
}

/// Writes a Docker `config.json` (what `docker login` writes) into `dir`
/// with `(registry, user, password)` entries; returns its path.
pub fn docker_config(dir: &Path, entries: &[(&str, &str, &str)]) -> PathBuf {
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(registry, user, password)| {
            (
                (*registry).to_owned(),
                serde_json::json!({"auth": base64(&format!("{user}:{password}"))}),
            )
        })
        .collect();
    std::fs::create_dir_all(dir).expect("the config's directory");
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::json!({ "auths": auths }).to_string())
        .expect("writing config.json");
    path
}

/// A `config.json` in `dir` with the test user's credentials for
/// [`PRIVATE`].
pub fn auth_file(dir: &Path) -> PathBuf {
    docker_config(dir, &[(PRIVATE, USER, PASSWORD)])
}

/// The kit's own Docker config directory, logged in to [`PRIVATE`].
pub fn pusher_config() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        auth_file(dir.path());
        dir
    })
    .path()
}

/// A repository of `registry` no other test uses: `<registry>/<test>/web`
/// for a test's unique stack name.
pub fn repository(registry: &str, stack: &str) -> String {
    format!("{registry}/{}/web", stack.to_ascii_lowercase())
}

/// Tags the local image `local` as `target` and pushes it: a new tag, or a
/// tag moved to another image. Returns the digest the registry now has for
/// `target`.
pub fn push(local: &str, target: &str) -> String {
    docker(&["tag", local, target]);
    let out = docker(&["push", target]);
    out.lines()
        .find_map(|line| {
            let (_, rest) = line.split_once("digest: ")?;
            rest.split_whitespace().next().map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no digest in the output of docker push {target}: {out}"))
}

/// Removes `image`'s tag and pinned references from the local engine (the
/// image itself stays for its other tags), so that a task that runs it must
/// pull it from its registry.
pub fn forget_local(image: &str) {
    let repository =
        image.rsplit_once(':').map_or(
            image,
            |(name, tag)| {
                if tag.contains('/') {
                    image
                } else {
                    name
                }
            },
        );
    let mut references = pinned_references(repository);
    references.push(image.to_owned());
    remove_references(&references);
}

/// The `repository@sha256:...` references the local engine has.
fn pinned_references(repository: &str) -> Vec<String> {
    image_list(&[
        "--digests",
        "--format",
        "{{.Repository}}@{{.Digest}}",
        repository,
    ])
    .into_iter()
    .filter(|line| !line.ends_with("@<none>"))
    .collect()
}

/// The lines of `docker image ls ARGS`; none when it fails (this runs in
/// `Drop` too, where a panic would abort).
fn image_list(args: &[&str]) -> Vec<String> {
    Command::new("docker")
        .args(["image", "ls"])
        .args(args)
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn remove_references(references: &[String]) {
    for reference in references {
        // A reference already gone is what was wanted.
        let _ = Command::new("docker").args(["rmi", reference]).output();
    }
}

/// Removes, when dropped, every local tag and pinned reference of a
/// repository a test pushed to, so runs leave no references behind.
pub struct LocalTags {
    repository: String,
}

impl LocalTags {
    pub fn new(repository: impl Into<String>) -> LocalTags {
        LocalTags {
            repository: repository.into(),
        }
    }
}

impl Drop for LocalTags {
    fn drop(&mut self) {
        let mut references: Vec<String> =
            image_list(&["--format", "{{.Repository}}:{{.Tag}}", &self.repository])
                .into_iter()
                .filter(|line| !line.ends_with(":<none>"))
                .collect();
        references.extend(pinned_references(&self.repository));
        remove_references(&references);
    }
}

/// Runs `docker args` with the kit's Docker config; stdout, or a panic with
/// stderr.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_CONFIG", pusher_config())
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
